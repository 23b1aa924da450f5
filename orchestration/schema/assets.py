"""One asset per Alembic revision and environment, built from the revision graph (nothing listed by hand).

A revision depends on the revision before it and on the data migrations it ``requires_data``, so "materialize
all" runs expand -> data -> contract in order. Materialising a revision that is already applied records a no-op.
"""

import time

import dagster as dg

import data_migrations
from orchestration.environments import ENVIRONMENTS, SCHEMA_POOL, data_key, revision_key
from orchestration.resources import RunGuard
from orchestration.steps import RETRY, core_call, size_and_rows
from tradedb import schema
from tradedb.core.errors import TradeDBError
from tradedb.ops import lint
from tradedb.ops.deploy_order import deploy_priority
from tradedb.ops.pipeline import apply_revision
from tradedb.schema import RevisionInfo


def revision_metadata(info: RevisionInfo) -> dict:
    return {
        "revision": info.revision,
        "ticket": info.ticket,
        "data_impact": info.data_impact,
        "rollback_notes": info.rollback_notes,
        "requires_data": ", ".join(info.requires_data) or "-",
        "preserves_data": info.preserves_data,
        "file": info.path,
        "sql": dg.MetadataValue.md(f"```sql\n{schema.render_sql(info.revision)}\n```"),
        **lint_metadata(info),
    }


def lint_metadata(info: RevisionInfo) -> dict:
    """Squawk and documentation findings (``tradedb lint``); the code location still loads without squawk."""
    try:
        result = lint.lint_by_revision()[info.revision]
    except TradeDBError as exc:  # squawk is a dev extra: a production code location may not have it
        return {"lint": f"unavailable: {exc}"}
    return {"lint": result.summary, "lint_findings": dg.MetadataValue.md(result.markdown())}


def revision_asset(env_name: str, info: RevisionInfo, previous: RevisionInfo | None) -> dg.AssetsDefinition:
    deps = [revision_key(env_name, previous)] if previous else []
    deps += [data_key(env_name, data_migrations.get(name)) for name in info.requires_data]

    @dg.asset(
        key=revision_key(env_name, info),
        deps=deps,
        group_name=info.feature,
        description=info.message,
        metadata=revision_metadata(info),
        kinds={"postgres"},
        tags={"environment": env_name, "step": "schema"},
        pool=SCHEMA_POOL,
        retry_policy=RETRY,
        op_tags={"dagster/priority": str(deploy_priority("schema", info.revision))},
    )
    def _revision(
        context: dg.AssetExecutionContext, guard: dg.ResourceParam[RunGuard]
    ) -> dg.MaterializeResult:
        env = core_call(lambda: guard.hold(env_name))
        size_before, _ = size_and_rows(env)
        started = time.monotonic()
        outcome = core_call(
            lambda: apply_revision(
                env,
                info.revision,
                run_id=context.run.run_id,
                before_change=lambda: guard.before_schema_change(env_name),
            )
        )
        size_after, _ = size_and_rows(env)
        context.log.info(f"{env_name} {info.revision}: {outcome.detail}")
        return dg.MaterializeResult(
            metadata={
                "applied": outcome.applied,
                "outcome": outcome.detail,
                "duration_s": round(time.monotonic() - started, 3),
                "db_size_before_bytes": size_before,
                "db_size_after_bytes": size_after,
                "db_size_change_bytes": size_after - size_before,
                "backup": guard.backup_id(env_name) or "-",
                **guard.planned(env_name, "schema", info.revision),
            }
        )

    return _revision


def build() -> list[dg.AssetsDefinition]:
    out = []
    history = schema.revisions()
    for env_name in ENVIRONMENTS:
        for i, info in enumerate(history):
            out.append(revision_asset(env_name, info, history[i - 1] if i else None))
    return out


defs = dg.Definitions(assets=build())
