"""The Alembic wrapper: revision metadata, current/pending state, upgrades, and drift against the models.

Everything that asks "where is this database in the history" goes through here, so the CLI, the scripts and the
orchestration agree. Plain ``alembic`` commands read the same ``alembic.ini`` and ``env.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine

from tradedb import FEATURES
from tradedb.db import connect_checked
from tradedb.errors import TradeDBError
from tradedb.settings import Environment, project_root

STATE_SCHEMA = "tradedb_migrations"
"""Our own schema (checkpoints, quarantine, ledger): never compared against the app's models."""


@dataclass(frozen=True)
class RevisionInfo:
    """What the tooling knows about one revision, read from its file's module attributes."""

    revision: str
    down_revision: str | None
    feature: str
    message: str
    ticket: str
    data_impact: str
    rollback_notes: str
    requires_data: tuple[str, ...]
    preserves_data: bool
    path: str
    lint_acknowledged: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Squawk rules this revision accepts, with the reason (raw module attribute; ``tradedb.lint`` checks it)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def alembic_config(
    env: Environment | None = None, *, connection: Engine | Connection | None = None, **attrs
) -> Config:
    """Build the Alembic config of the project, carrying our environment (and optionally a connection)."""
    cfg = Config(str(project_root() / "alembic.ini"))
    cfg.attributes["skip_logging_config"] = True
    if env is not None:
        cfg.attributes["environment"] = env
        cfg.cmd_opts = None
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.attributes.update(attrs)
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Compare only the app's own schema: our state schema and Alembic's version table are not models."""
    if type_ == "schema":
        return name in (None, "public")
    return not (type_ == "table" and name == "alembic_version")


def place_new_revision(feature: str | None):
    """Return a ``process_revision_directives`` hook putting a new revision in ``migrations/<feature>/``."""

    def hook(context, revision, directives) -> None:
        if not feature or not directives:
            return
        if feature not in FEATURES:
            raise TradeDBError(f"unknown feature {feature!r}: choose one of {', '.join(FEATURES)}")
        script = getattr(context, "script", None)
        folder = Path(script.dir) if script is not None else project_root() / "migrations"
        directives[0].version_path = str(folder / feature)

    return hook


def revision_info(script: Script) -> RevisionInfo:
    module = script.module
    down = script.down_revision
    return RevisionInfo(
        revision=script.revision,
        down_revision=down if isinstance(down, str) or down is None else ",".join(down),
        feature=Path(script.path).parent.name,
        message=(script.doc or "").strip(),
        ticket=getattr(module, "ticket", ""),
        data_impact=getattr(module, "data_impact", ""),
        rollback_notes=getattr(module, "rollback_notes", ""),
        requires_data=tuple(getattr(module, "requires_data", ())),
        preserves_data=bool(getattr(module, "preserves_data", True)),
        path=str(Path(script.path).relative_to(project_root())),
        lint_acknowledged=getattr(module, "lint_acknowledged", {}),
    )


@cache
def revisions() -> tuple[RevisionInfo, ...]:
    """All revisions, oldest first.

    Cached for the life of the process: loading the script directory parses every revision file (about 90 ms),
    and the Dagster definitions, checks and status ask for it dozens of times. A new revision file is picked up by
    the next process (Dagster reloads its code location in a new one).
    """
    return tuple(revision_info(s) for s in reversed(list(script_directory().walk_revisions())))


def head() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise TradeDBError(
            f"the history has {len(heads)} heads ({', '.join(heads)}); run `alembic merge heads`"
        )
    return heads[0]


def resolve_revision(rev: str) -> str:
    """Turn a revision argument (id, prefix, head, base) into a full id, or a clear error."""
    if rev in ("base",):
        return rev
    try:
        script = script_directory().get_revision(rev)
    except CommandError as exc:
        raise TradeDBError(f"unknown revision {rev!r}: {exc}") from None
    if script is None:
        raise TradeDBError(f"unknown revision {rev!r}")
    return script.revision


def current_revision(env: Environment, conn: Connection | None = None) -> str | None:
    """The database's current revision (None on an empty database)."""
    if conn is not None:
        return MigrationContext.configure(conn).get_current_revision()
    with connect_checked(env) as c:
        return MigrationContext.configure(c).get_current_revision()


def pending(env: Environment, current: str | None = None) -> list[RevisionInfo]:
    """Revisions between the database's current revision and head, in the order they will run."""
    current = current_revision(env) if current is None else current
    all_revs = revisions()
    ids = [r.revision for r in all_revs]
    if current is None:
        return list(all_revs)
    if current not in ids:
        raise TradeDBError(
            f"the {env.name} database is at revision {current!r}, which this code does not know "
            "(a newer release, or a branch not merged here)"
        )
    return list(all_revs[ids.index(current) + 1 :])


DDL_LOCK_TIMEOUT = "5s"  # how long a schema step waits for its lock before failing (and being retried)


def ddl_lock_timeout(explicit: str | None = None) -> str:
    """The ``lock_timeout`` for schema steps: ``-x lock_timeout=``, else ``TRADEDB_LOCK_TIMEOUT``, else 5s."""
    import os
    import re

    value = (explicit or os.environ.get("TRADEDB_LOCK_TIMEOUT") or DDL_LOCK_TIMEOUT).strip()
    if not re.fullmatch(r"\d+\s*(ms|s|min)?", value):
        raise TradeDBError(
            f"malformed lock timeout {value!r}: use milliseconds or a unit, e.g. 5s, 500ms, 1min"
        )
    return value


def _launched(attrs: dict) -> dict:
    """Name our own callers in the ledger as the CLI unless they say otherwise (Dagster passes its run id)."""
    if "launched_by" not in attrs:
        from tradedb.ledger import cli_user

        attrs["launched_by"] = cli_user("cli")
    return attrs


def upgrade(env: Environment, target: str = "head", **attrs) -> None:
    """Upgrade the environment's database to ``target`` through Alembic (our env.py: lock, guards, ledger)."""
    command.upgrade(alembic_config(env, **_launched(attrs)), target)


def downgrade(env: Environment, target: str, **attrs) -> None:
    command.downgrade(alembic_config(env, **_launched(attrs)), target)


def stamp(env: Environment, target: str, **attrs) -> None:
    command.stamp(alembic_config(env, **_launched(attrs)), target)


def drift(env: Environment, metadata=None) -> list[str]:
    """Differences between the models (or ``metadata``) and the database, as readable lines (empty when equal)."""
    if metadata is None:
        from tradedb.models import metadata

    with connect_checked(env) as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name, "compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    return [describe_diff(d) for d in diffs]


def describe_diff(diff: Any) -> str:
    """Render one autogenerate diff tuple as a sentence an operator can act on."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(d) for d in diff)
    kind = diff[0]
    if kind == "add_table":
        return f"table {diff[1].name} is in the models but not in the database"
    if kind == "remove_table":
        return f"table {diff[1].name} is in the database but not in the models"
    if kind == "add_column":
        return f"column {diff[2]}.{diff[3].name} is in the models but not in the database"
    if kind == "remove_column":
        return f"column {diff[2]}.{diff[3].name} is in the database but not in the models"
    if kind in ("add_index", "remove_index"):
        where = "models" if kind == "add_index" else "database"
        return f"index {diff[1].name} on {diff[1].table.name} is only in the {where}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        where = "models" if kind.startswith("add") else "database"
        return f"constraint {diff[1].name} on {diff[1].table.name} is only in the {where}"
    if kind == "modify_nullable":
        _, _, table, column, _, was, now = diff
        return f"column {table}.{column}: database nullable={was}, models nullable={now}"
    if kind == "modify_type":
        _, _, table, column, _, was, now = diff
        return f"column {table}.{column}: database type {was}, models type {now}"
    if kind == "modify_default":
        _, _, table, column, _, was, now = diff
        return f"column {table}.{column}: default differs (database {was!r}, models {now!r})"
    return repr(diff)


@cache
def render_sql(revision: str) -> str:
    """The SQL of one revision alone (offline, ``alembic upgrade prev:rev --sql``), for review and linting.

    Rendering the revision on its own keeps tables created earlier in the history from reading as new ones.
    """
    import io

    info = next(r for r in revisions() if r.revision == revision)
    buffer = io.StringIO()
    cfg = alembic_config()
    cfg.output_buffer = buffer
    command.upgrade(cfg, f"{info.down_revision or 'base'}:{revision}", sql=True)
    return buffer.getvalue()


def has_state_table(conn: Connection, table: str) -> bool:
    """Whether ``tradedb_migrations.<table>`` exists yet (it is created by the first data-migration run)."""
    from sqlalchemy import text

    return bool(conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{STATE_SCHEMA}.{table}"}))


def database_size(conn: Connection) -> int:
    """Bytes on disk of the current database (for before/after metadata)."""
    from sqlalchemy import text

    return int(conn.scalar(text("SELECT pg_database_size(current_database())")))
