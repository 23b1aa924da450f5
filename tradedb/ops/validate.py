"""Validate the whole history on a scratch database with data in it: the strategy's validate_migrations.py, done properly.

For every revision, oldest first: upgrade to it, downgrade one step, upgrade again. Sample data is loaded at the
first release, and data migrations run before the contract revisions that need them, so every step runs over
realistic rows. Checks per revision:
- after up -> down, every table is as before the upgrade (for revisions that claim ``preserves_data``);
- after down -> up, every table is as after the first upgrade (for all revisions: nothing is lost on a re-run);
- both comparisons cover the managed views, functions and triggers too (their definitions as PostgreSQL renders
  them): a downgrade must drop or restore what its upgrade created or replaced, and the re-upgrade bring it back;
- at head, the schema matches the models.
The scratch database lives on the environment's server and is dropped afterwards, whatever happened.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy import create_engine

from data_migrations import engine as data_engine
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.objects import describe
from tradedb.core.settings import Environment
from tradedb.ops.checksums import database_checksums, differing
from tradedb.ops.sample_data import FIRST_RELEASE, load

VALIDATE_ROWS = 500


@dataclass
class StepResult:
    revision: str
    feature: str
    message: str
    ok: bool
    detail: str = ""


@dataclass
class ValidationReport:
    steps: list[StepResult]
    drift: list[str]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and not self.drift


def scratch_environment(env: Environment) -> Environment:
    """A throwaway database on the same server as ``env`` (never ``env`` itself)."""
    name = f"{env.url.database}_validate_{os.getpid()}"
    return Environment(f"{env.name}-validate", env.url.set(database=name), env.embedded)


def _admin(env: Environment):
    return create_engine(env.url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def create_scratch(env: Environment) -> Environment:
    scratch = scratch_environment(env)
    engine = _admin(env)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch.url.database}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{scratch.url.database}"')
    except Exception as exc:
        raise TradeDBError(
            f"cannot create a scratch database on the {env.name} server ({env.safe_url}): "
            f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()
    return scratch


def table_checksums(env: Environment) -> dict[str, str]:
    """Checksum of every app table of ``env``'s database, by name (one snapshot of a round trip)."""
    with connect_checked(env) as conn:
        return database_checksums(conn)


def round_trip_snapshot(env: Environment) -> dict[str, str]:
    """What a validation round trip compares: every table's checksum, and each managed object's definition."""
    with connect_checked(env) as conn:
        objects = {
            describe(identity): definition for identity, definition in schema.database_objects(conn).items()
        }
        return {**database_checksums(conn), **objects}


def round_trip_problems(
    before: dict[str, str],
    after_up: dict[str, str],
    after_down: dict[str, str],
    after_reup: dict[str, str],
    *,
    not_restorable: Collection[str] | None = (),
) -> list[str]:
    """What an up -> down -> up round trip lost, as readable lines (empty when nothing was).

    Two comparisons, because they prove different things: the downgrade must bring back every table as it was
    before the upgrade, except the tables in ``not_restorable`` (revisions declaring ``preserves_data = False``
    rebuild them in canonical form; ``None`` exempts every table); and the re-upgrade must reproduce every table
    exactly as the first upgrade left it, whatever the revisions declare, because nothing may be lost on a re-run.
    """
    problems = []
    if not_restorable is not None:
        lost = [t for t in differing(before, after_down) if t not in not_restorable]
        if lost:
            problems.append(f"downgrade did not restore: {', '.join(lost)}")
    if differing(after_up, after_reup):
        problems.append(f"re-upgrade differs in: {', '.join(differing(after_up, after_reup))}")
    return problems


def drop_scratch(env: Environment, scratch: Environment) -> None:
    engine = _admin(env)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch.url.database}" WITH (FORCE)')
    finally:
        engine.dispose()


def validate(
    env: Environment, rows: int = VALIDATE_ROWS, on_step: Callable[[StepResult], None] | None = None
) -> ValidationReport:
    """Run the up/down/up walk over every revision on a scratch copy next to ``env``."""

    scratch = create_scratch(env)
    steps: list[StepResult] = []
    try:
        previous = "base"
        seeded = False
        for info in schema.revisions():
            for name in info.requires_data:
                result = data_engine.run(scratch.url, name, data_engine.RunOptions(environment=scratch.name))
                if result.status != "finished":
                    raise TradeDBError(
                        f"data migration {name} did not finish on the scratch database: {result.stop_reason}"
                    )
            before = round_trip_snapshot(scratch)
            schema.upgrade(scratch, info.revision)
            after_up = round_trip_snapshot(scratch)
            schema.downgrade(scratch, previous)
            after_down = round_trip_snapshot(scratch)
            schema.upgrade(scratch, info.revision)
            after_reup = round_trip_snapshot(scratch)
            problems = round_trip_problems(
                before, after_up, after_down, after_reup, not_restorable=() if info.preserves_data else None
            )
            step = StepResult(
                info.revision, info.feature, info.message.splitlines()[0], not problems, "; ".join(problems)
            )
            steps.append(step)
            if on_step:
                on_step(step)
            if info.revision == FIRST_RELEASE and not seeded:
                with connect_checked(scratch) as conn:
                    load(conn, rows, 7)
                seeded = True
            previous = info.revision
        drift = schema.drift(scratch)
    finally:
        drop_scratch(env, scratch)
    return ValidationReport(steps, drift)
