"""Jobs: ``deploy_<env>`` migrates everything pending in order; ``verify_<env>`` only runs the checks;
``rehearse_staging`` rehearses the deploy on staging; ``drift_watch`` checks every environment's schema and
materialises the ledger reports.

Deploy jobs use ``orchestration.executor.deploy_executor``: by default every step in the run's process, one after
another, under the migration lock the ``guard`` resource holds for the whole run; with ``parallel: N`` in the run
config, data migrations on different tables side by side, each step in a process of its own, under the lock the
run's own process holds. The other jobs use the in-process executor.
"""

from __future__ import annotations

import dagster as dg

import data_migrations
from orchestration.environments import ENVIRONMENTS, data_key, revision_key
from orchestration.executor import deploy_executor
from orchestration.monitoring.assets import report_key
from orchestration.rehearsal.assets import REHEARSAL_KEY
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
        executor_def=deploy_executor,
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


REHEARSE_JOB = "rehearse_staging"
DRIFT_WATCH_JOB = "drift_watch"

rehearse_job = dg.define_asset_job(
    REHEARSE_JOB,
    selection=dg.AssetSelection.assets(REHEARSAL_KEY),
    description="Rehearse the production deploy on staging and measure it (durations, locks, round trip).",
    executor_def=dg.in_process_executor,
    tags={"environment": "staging", "kind": "rehearsal"},
)

drift_watch_job = dg.define_asset_job(
    DRIFT_WATCH_JOB,
    selection=dg.AssetSelection.assets(*(report_key(env) for env in ENVIRONMENTS))
    | dg.AssetSelection.checks_for_assets(
        *(revision_key(env, schema.revisions()[-1]) for env in ENVIRONMENTS)
    ),
    description="Every environment: schema against what its revision should contain, edited revisions, orphans; "
    "and the ledger report. Drift fails a check and alerts.",
    executor_def=dg.in_process_executor,
    tags={"kind": "drift_watch"},
)

defs = dg.Definitions(
    jobs=[job(env) for env in ENVIRONMENTS for job in (deploy_job, verify_job)]
    + [rehearse_job, drift_watch_job]
)
