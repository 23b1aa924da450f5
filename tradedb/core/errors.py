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


class DeadlinePassed(TradeDBError):
    """A run stopped at its deadline on purpose: the next window resumes it (alerted as a stop, not a failure)."""


class BackupRefused(TradeDBError):
    """No backup could be taken, so the production run changed nothing (alerted as ``backup_failed``)."""


def first_line(exc: BaseException) -> str:
    """An error as one line for the operator: its first line, or its type when it has no message."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def cause_line(exc: BaseException) -> str:
    """Like ``first_line``, but of the database driver's error when SQLAlchemy wraps one (no wrapper prefix)."""
    return first_line(getattr(exc, "orig", None) or exc)
