"""The revision history: the files, read once, and where a database stands in it.

Everything that asks "which revisions exist, what do they declare, where is this database" goes through here,
so the CLI, the scripts and the orchestration agree. Plain ``alembic`` commands read the same ``alembic.ini``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine

from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.paths import project_root
from tradedb.core.settings import Environment


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
    """Squawk rules this revision accepts, with the reason (raw module attribute; ``tradedb.ops.lint`` checks it)."""

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
