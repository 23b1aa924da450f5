"""Alembic's commands, run our way: with the environment, the launcher's name and the DDL lock timeout.

Upgrades, downgrades and stamps all go through ``migrations/env.py`` (lock, contract guards, ledger), whichever
entry point calls them; ``render_sql`` renders one revision's SQL offline for review and linting; ``new_revision``
is ``alembic revision`` with the feature folder and the template's fields given up front.
"""

from __future__ import annotations

import io
import os
import re
from functools import cache

from alembic import command
from alembic.script import Script
from alembic.util import CommandError

from tradedb.core.errors import TradeDBError
from tradedb.core.launchers import cli_user
from tradedb.core.settings import Environment
from tradedb.schema.history import alembic_config, revisions
from tradedb.schema.revision_files import WRITING_ATTRIBUTE, feature_folder

DDL_LOCK_TIMEOUT = "5s"  # how long a schema step waits for its lock before failing (and being retried)


def ddl_lock_timeout(explicit: str | None = None) -> str:
    """The ``lock_timeout`` for schema steps: ``-x lock_timeout=``, else ``TRADEDB_LOCK_TIMEOUT``, else 5s."""
    value = (explicit or os.environ.get("TRADEDB_LOCK_TIMEOUT") or DDL_LOCK_TIMEOUT).strip()
    if not re.fullmatch(r"\d+\s*(ms|s|min)?", value):
        raise TradeDBError(
            f"malformed lock timeout {value!r}: use milliseconds or a unit, e.g. 5s, 500ms, 1min"
        )
    return value


def _launched(attrs: dict) -> dict:
    """Name our own callers in the ledger as the CLI unless they say otherwise (Dagster passes its run id)."""
    if "launched_by" not in attrs:
        attrs["launched_by"] = cli_user("cli")
    return attrs


def upgrade(env: Environment, target: str = "head", **attrs) -> None:
    """Upgrade the environment's database to ``target`` through Alembic (our env.py: lock, guards, ledger)."""
    command.upgrade(alembic_config(env, **_launched(attrs)), target)


def downgrade(env: Environment, target: str, **attrs) -> None:
    command.downgrade(alembic_config(env, **_launched(attrs)), target)


def stamp(env: Environment, target: str, **attrs) -> None:
    command.stamp(alembic_config(env, **_launched(attrs)), target)


@cache
def render_sql(revision: str) -> str:
    """The SQL of one revision alone (offline, ``alembic upgrade prev:rev --sql``), for review and linting.

    Rendering the revision on its own keeps tables created earlier in the history from reading as new ones.
    """
    info = next(r for r in revisions() if r.revision == revision)
    buffer = io.StringIO()
    cfg = alembic_config()
    cfg.output_buffer = buffer
    command.upgrade(cfg, f"{info.down_revision or 'base'}:{revision}", sql=True)
    return buffer.getvalue()


def new_revision(
    message: str,
    feature: str,
    *,
    env: Environment | None = None,
    autogenerate: bool = False,
    rev_id: str | None = None,
    **fields: object,
) -> Script:
    """Write a new revision into ``migrations/<feature>/`` through ``alembic revision`` and return it.

    ``fields`` are the template's (``requires_data``, ``ticket``, ``data_impact``, ``rollback_notes``; see
    ``revision_files.template_args``). ``autogenerate`` compares the models with ``env``'s database, which must be
    at head, as with ``alembic revision --autogenerate``; otherwise no database is touched.
    """
    attrs = {WRITING_ATTRIBUTE: not autogenerate, **{k: v for k, v in fields.items() if v}}
    cfg = alembic_config(env if autogenerate else None, **attrs)
    try:
        script = command.revision(
            cfg,
            message=message,
            autogenerate=autogenerate,
            version_path=str(feature_folder(feature)),
            rev_id=rev_id,
        )
    except TradeDBError:
        raise
    except CommandError as exc:
        raise TradeDBError(f"alembic revision: {exc}") from None
    if not isinstance(script, Script):
        raise TradeDBError("alembic revision wrote no single file")  # only a multi-head merge writes several
    return script
