"""Which environment an asset belongs to, and the asset keys of the graph.

Environments are kept apart by an asset-key prefix (``dev/...``, ``staging/...``, ``production/...``) rather than
a partition: each environment's graph is its own set of assets with its own materialisation history, so
materialising staging can never make production look migrated, a job is simply "everything under one prefix",
and the UI's lineage view shows one environment at a time. A partition would share asset definitions and
staleness across environments and make "is production at head?" a per-partition question on every asset.
"""

from __future__ import annotations

import dagster as dg

from data_migrations.base import DataMigration
from tradedb.core.settings import ENVIRONMENTS
from tradedb.schema import RevisionInfo

__all__ = ["ENVIRONMENTS", "revision_key", "data_key", "SCHEMA_POOL", "data_pool"]

SCHEMA_POOL = "tradedb_schema"
"""Dagster pool of schema steps: limited to 1 in dagster.yaml, one revision at a time."""


def data_pool(env: str, table: str) -> str:
    """Dagster pool of the data migrations of one table in one environment (limited to 1 like every pool): a
    deploy running steps side by side never runs two on one table, and runs those on other tables at once."""
    return f"tradedb_data_{env}_{table}"


def revision_key(env: str, info: RevisionInfo) -> dg.AssetKey:
    return dg.AssetKey([env, info.feature, f"rev_{info.revision}"])


def data_key(env: str, migration: DataMigration) -> dg.AssetKey:
    return dg.AssetKey([env, migration.feature, migration.name.split(".", 1)[1]])
