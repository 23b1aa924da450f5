"""One asset per data migration and environment, from the registry. One materialisation runs the whole batch loop.

Dagster does not get an op per batch (its per-step overhead would dwarf a batch); the engine owns batching,
checkpoints and retries, and logs progress into the run. Scale-out is the engine's ``workers`` option.
"""

import dagster as dg

import data_migrations
from data_migrations.base import DataMigration
from data_migrations.engine.progress import log_reporter
from orchestration.environments import ENVIRONMENTS, data_key, data_pool, revision_key
from orchestration.failures import ERROR_TYPE
from orchestration.resources import RunGuard
from orchestration.steps import RETRY, core_call, size_and_rows
from tradedb import schema
from tradedb.core.errors import DeadlinePassed
from tradedb.ops.deploy_order import deploy_priority
from tradedb.ops.pipeline import run_data_migration


def data_asset(env_name: str, m: DataMigration) -> dg.AssetsDefinition:
    after = next(r for r in schema.revisions() if r.revision == m.after)
    needed_by = [r.revision for r in schema.revisions() if m.name in r.requires_data]

    @dg.asset(
        key=data_key(env_name, m),
        deps=[revision_key(env_name, after)],
        group_name=m.feature,
        description=m.description,
        metadata={
            "data_migration": m.name,
            "table": m.table,
            "key": m.key,
            "kind": m.kind,
            "after_revision": m.after,
            "needed_by": ", ".join(needed_by) or "-",
            "reversible": m.reversible,
            "on_bad_row": m.on_bad_row,
            "invariants": ", ".join(i.name for i in m.invariants) or "-",
        },
        kinds={"postgres", "pandas" if m.kind == "pandas" else "sql"},
        tags={"environment": env_name, "step": "data"},
        pool=data_pool(env_name, m.table),
        retry_policy=RETRY,
        op_tags={"dagster/priority": str(deploy_priority("data", m.name))},
    )
    def _data(context: dg.AssetExecutionContext, guard: dg.ResourceParam[RunGuard]) -> dg.MaterializeResult:
        env = core_call(lambda: guard.hold(env_name))
        size_before, rows_before = size_and_rows(env, m.table)
        result = core_call(
            lambda: run_data_migration(
                env,
                m.name,
                deadline=guard.deadline(env_name),
                on_progress=log_reporter(context.log),
                run_id=context.run.run_id,
            )
        )
        size_after, rows_after = size_and_rows(env, m.table)
        metadata = {
            **result.metadata(),
            "table_rows_before": rows_before,
            "table_rows_after": rows_after,
            "db_size_before_bytes": size_before,
            "db_size_after_bytes": size_after,
            **guard.planned(env_name, "data", m.name),
        }
        if result.status != "finished":
            if result.stopped_at_deadline:  # alerted as a deadline stop, not as a failure
                metadata[ERROR_TYPE] = DeadlinePassed.__name__
            raise dg.Failure(
                description=f"{m.name} stopped ({result.status}): {result.stop_reason}; the next run resumes it",
                metadata=metadata,
                allow_retries=False,
            )
        context.log.info(
            f"{m.name}: {result.rows_done} rows, {result.rows_quarantined} quarantined, {result.batches} batches"
        )
        return dg.MaterializeResult(metadata=metadata)

    return _data


defs = dg.Definitions(
    assets=[data_asset(env, m) for env in ENVIRONMENTS for m in data_migrations.registry().values()]
)
