"""The order a deploy runs its steps in, and the fingerprint of what the code would deploy.

Expand revisions, then each data migration right after its ``after`` revision, then the contract revisions that
need them: the order of the Dagster deploy job (enforced with ``dagster/priority`` tags), of the rehearsal and of
the plan. ``fingerprint()`` names the revision files and data-migration declarations in code, so the rehearsal
sensor asks for exactly one rehearsal per change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import data_migrations
from data_migrations.base import DataMigration
from tradedb import schema
from tradedb.core.errors import TradeDBError
from tradedb.core.paths import project_root

FINGERPRINT_CHARS = 16


def fingerprint() -> str:
    """A short, stable hash of the revisions and data migrations in code: the sensor's run key.

    It covers each revision's id and file bytes, and each data migration's name, ``after`` revision and the bytes
    of the module declaring it, so editing any of them (not only adding one) asks for a new rehearsal.
    """
    items = [["revision", r.revision, _file_sha256(project_root() / r.path)] for r in schema.revisions()]
    for m in data_migrations.registry().values():
        items.append(["data", m.name, m.after, _file_sha256(data_migrations.source_file(m.name))])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:FINGERPRINT_CHARS]


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


@dataclass(frozen=True)
class Step:
    """One step of a deploy: a revision (``kind='schema'``, name = revision id) or a data migration."""

    kind: str
    name: str
    feature: str


def deploy_order(current: str | None) -> list[Step]:
    """The steps a deploy runs from revision ``current`` (None: an empty database) to head, in order.

    Each pending revision in history order, and each data migration right after its ``after`` revision (so before
    the contract revision that ``requires_data`` it). A data migration whose ``after`` revision is already applied
    but whose contract is still pending comes first: it may have rows left (a deploy stopped at a window's end).
    The Dagster deploy job follows this same order through ``deploy_priority``.
    """
    pending = pending_revisions(current)
    pending_ids = {r.revision for r in pending}
    still_needed = {name for r in pending for name in r.requires_data}
    migrations = list(data_migrations.registry().values())
    position = {r.revision: i for i, r in enumerate(schema.revisions())}
    carried = [m for m in migrations if m.after not in pending_ids and m.name in still_needed]
    steps = [_data_step(m) for m in sorted(carried, key=lambda m: position.get(m.after, -1))]
    for info in pending:
        steps.append(Step("schema", info.revision, info.feature))
        steps += [_data_step(m) for m in migrations if m.after == info.revision]
    return steps


def _data_step(m: DataMigration) -> Step:
    return Step("data", m.name, m.feature)


def pending_revisions(current: str | None) -> list[schema.RevisionInfo]:
    history = list(schema.revisions())
    ids = [r.revision for r in history]
    if current is None:
        return history
    if current not in ids:
        raise TradeDBError(
            f"revision {current!r} is not in this code's history (a newer release, or a branch)"
        )
    return history[ids.index(current) + 1 :]


@cache
def _priorities() -> dict[tuple[str, str], int]:
    order = deploy_order(None)
    return {(s.kind, s.name): len(order) - i for i, s in enumerate(order)}


def deploy_priority(kind: str, name: str) -> int:
    """Dagster ``dagster/priority`` tag for a deploy asset: earlier in ``deploy_order`` means higher.

    Among steps ready at the same moment Dagster runs the higher priority first, so with these tags the deploy
    job runs in exactly ``deploy_order`` (without them it ran revision 0012 before the data migration after 0011).
    """
    return _priorities()[(kind, name)]
