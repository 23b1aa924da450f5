"""Drift watch: does each environment's schema hold exactly what its revision should, no more, no less?

At head the reference is the models (``alembic check``'s question). Behind head the models are the wrong
reference (they describe head), so the reference is the schema the environment's own revision produces: built on
a scratch database next to it, reflected, and compared the same way. A manual ``ALTER TABLE`` in production shows
up in either case, and so does a managed view, function or trigger that was dropped, replaced or added by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import MetaData, create_engine

from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.ops.validate import create_scratch, drop_scratch


@dataclass(frozen=True)
class DriftReport:
    environment: str
    revision: str | None
    against: str
    differences: list[str]

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        if self.ok:
            return f"{self.environment} at {self.revision or 'base'} matches {self.against}"
        return (
            f"schema drift on {self.environment} at {self.revision or 'base'}: {len(self.differences)} "
            f"difference(s) from {self.against}: " + "; ".join(self.differences[:5])
        )


def expected_schema(env: Environment, revision: str) -> tuple[MetaData, dict[str, str]]:
    """The tables and managed objects ``revision`` produces, read from a scratch database on ``env``'s server."""
    scratch = create_scratch(env)
    try:
        schema.upgrade(scratch, revision, launched_by="drift-watch")
        engine = create_engine(scratch.url)
        try:
            reflected = MetaData()
            reflected.reflect(bind=engine)
        finally:
            engine.dispose()
        with connect_checked(scratch) as conn:
            objects = schema.database_objects(conn)
        return reflected, objects
    finally:
        drop_scratch(env, scratch)


def watch(env: Environment) -> DriftReport:
    """Compare ``env`` with what its current revision should contain (the models at head)."""
    current = schema.current_revision(env)
    if current is None or current == schema.head():
        against = "the models" if current else "an empty database"
        if current:
            return DriftReport(env.name, current, against, schema.drift(env))
        return DriftReport(env.name, current, against, schema.drift(env, MetaData(), objects={}))
    metadata, objects = expected_schema(env, current)
    return DriftReport(env.name, current, f"revision {current}", schema.drift(env, metadata, objects))
