"""One report asset per environment: the ledger's figures (success rate, durations, database size) as metadata.

Materialised by the drift-watch job on its schedule, so every tick adds a point to the asset's plots in the UI:
the aggregates, ``duration_s/<step>`` and ``max_duration_s/<step>`` per revision and data migration (see
``tradedb.ops.report.metrics``), and the slowest steps as a table. The chart is the one ``tradedb report`` draws, but
written to one fixed file per environment, ``reports/<env>_latest.png``, overwritten on each tick, so the
hourly schedule does not fill ``reports/``.
"""

import dagster as dg

from orchestration.environments import ENVIRONMENTS
from tradedb.core.settings import resolve_environment
from tradedb.ops import report

MONITORING_GROUP = "monitoring"


def report_key(env_name: str) -> dg.AssetKey:
    return dg.AssetKey(["reports", env_name])


def report_asset(env_name: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=report_key(env_name),
        group_name=MONITORING_GROUP,
        description=f"Migration ledger report of {env_name}: success rate, step durations, database size.",
        kinds={"postgres"},
        tags={"environment": env_name, "step": "report"},
    )
    def _report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        rep = report.collect(resolve_environment(env_name))
        metadata: dict = dict(report.metrics(rep))
        slowest = report.slowest_markdown(rep)
        if slowest is not None:
            metadata["slowest_steps"] = dg.MetadataValue.md(slowest)
        if not rep.empty:
            chart = report.write_chart(rep, report.latest_chart_path(env_name))
            metadata["chart"] = dg.MetadataValue.path(str(chart))
            context.log.info(f"{env_name}: chart written to {chart}")
        return dg.MaterializeResult(metadata=metadata)

    return _report


defs = dg.Definitions(assets=[report_asset(env) for env in ENVIRONMENTS])
