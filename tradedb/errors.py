"""The one user-facing error type.

It subclasses Alembic's ``CommandError`` on purpose: plain ``alembic`` prints a ``CommandError`` as a single
``FAILED: ...`` line and exits non-zero instead of dumping a traceback, so errors raised from ``env.py`` and from
revision files read the same whether the operator used ``alembic`` or ``tradedb``.
"""

from alembic.util import CommandError


class TradeDBError(CommandError):
    """Something the operator can fix: the message says what and how."""


class DataMigrationPending(TradeDBError):
    """A contract revision was asked to run while rows still need a data migration."""
