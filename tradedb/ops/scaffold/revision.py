"""``tradedb new revision``: ``alembic revision`` into a feature folder, with its documentation filled in up front.

Why a numbered id by default: the history is numbered (0001, 0002, ...), which ``alembic history``, the README's
schema table and the ticket trail all read in order. Two branches that both take the next number make Alembic refuse
to load the history ("present more than once") until one is renumbered, which is loud and happens before any
database ran either; ``--rev-id`` picks another id, and a history that is not all numbers gets Alembic's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import data_migrations
from tradedb import schema
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.ops.lint import check_documentation

NUMBERED_ID = re.compile(r"\d{4,}")
REV_ID = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class NewRevision:
    """What ``new_revision`` wrote."""

    revision: str
    down_revision: str | None
    feature: str
    path: str
    requires_data: tuple[str, ...]
    to_fill: tuple[str, ...]
    """Documentation ``tradedb lint`` still rejects in the new file (one sentence each)."""


def next_revision_id() -> str | None:
    """The next number when every revision id so far is a number (0001, ...), else None (Alembic picks one)."""
    ids = [r.revision for r in schema.revisions()]
    if not ids or not all(NUMBERED_ID.fullmatch(i) for i in ids):
        return None
    width = max(len(i) for i in ids)
    return f"{max(int(i) for i in ids) + 1:0{width}d}"


def new_revision(
    message: str,
    feature: str,
    *,
    env: Environment | None = None,
    autogenerate: bool = False,
    requires_data: Sequence[str] = (),
    rev_id: str | None = None,
    ticket: str | None = None,
    data_impact: str | None = None,
    rollback_notes: str | None = None,
) -> NewRevision:
    """Check the arguments, then write the revision (see ``tradedb.schema.new_revision``)."""
    if not message.strip():
        raise TradeDBError(
            "the message (-m) is empty: say what changes and why, it is the revision's description"
        )
    schema.check_feature(feature)
    requires = tuple(data_migrations.get(name).name for name in requires_data)
    current_head = schema.head()  # one clear error for a history with two heads, before anything is written
    known = {r.revision for r in schema.revisions()}
    if rev_id is not None and not REV_ID.fullmatch(rev_id):
        raise TradeDBError(f"revision id {rev_id!r} may hold only letters, digits and underscores")
    if rev_id in known:
        raise TradeDBError(f"revision {rev_id} already exists: choose another --rev-id")
    if autogenerate and env is None:
        raise TradeDBError("--autogenerate compares the models with a database: name its environment")
    script = schema.new_revision(
        message.strip(),
        feature,
        env=env,
        autogenerate=autogenerate,
        rev_id=rev_id or next_revision_id(),
        requires_data=requires,
        ticket=ticket,
        data_impact=data_impact,
        rollback_notes=rollback_notes,
    )
    info = schema.revision_info(script)
    return NewRevision(
        revision=info.revision,
        down_revision=current_head,
        feature=feature,
        path=info.path,
        requires_data=requires,
        to_fill=tuple(f.message for f in check_documentation(info)),
    )
