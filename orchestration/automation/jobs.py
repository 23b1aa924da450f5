"""Jobs: ``deploy_<env>`` migrates everything pending in order; ``verify_<env>`` only runs the checks.

Both use the in-process executor: one process, so the migration lock resource lives for the whole run and the
steps run one after another (the engine scales a data migration out with its own workers).
"""

from __future__ import annotations

import dagster as dg

import data_migrations
from orchestration.environments import ENVIRONMENTS, data_key, revision_key
from tradedb import schema


def environment_keys(env_name: str) -> list[dg.AssetKey]:
    """Every asset key of one environment's graph."""
    return [revision_key(env_name, r) for r in schema.revisions()] + [
        data_key(env_name, m) for m in data_migrations.registry().values()
    ]


def deploy_job(env_name: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"deploy_{env_name}",
        selection=dg.AssetSelection.key_prefixes([env_name]),
        description=f"Migrate {env_name}: schema upgrades, data migrations before the contracts that need them, checks.",
        executor_def=dg.in_process_executor,
        tags={"environment": env_name, "kind": "deploy"},
    )


def verify_job(env_name: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"verify_{env_name}",
        selection=dg.AssetSelection.checks_for_assets(*environment_keys(env_name)),
        description=f"Check {env_name} without changing it: drift, invariants, quarantine, orphans.",
        executor_def=dg.in_process_executor,
        tags={"environment": env_name, "kind": "verify"},
    )


defs = dg.Definitions(jobs=[job(env) for env in ENVIRONMENTS for job in (deploy_job, verify_job)])
