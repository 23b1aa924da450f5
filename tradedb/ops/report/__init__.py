"""Run reports: what the ledger says about an environment over a period, as numbers, tables and a chart.

The strategy's key metrics are execution time, success/failure rate, schema drift and database size changes; this
package answers all but drift (``tradedb drift``) from ``tradedb.schema.ledger`` alone, so a report needs no Dagster
instance and covers runs from the UI, the CLI and plain ``alembic`` alike.

Definitions (kept exact because tests and Dagster metadata depend on them):

- a *step* is one ledger entry of kind ``schema`` (one revision, any direction) or ``data`` (one data-migration run
  or revert); ``overall`` counts every entry except ``override`` (an audited decision, not a run);
- ``success_rate`` = successes / (successes + failures); ``stopped`` runs (a deadline, a pause) ended as asked and
  count in neither; None when there is nothing to rate;
- per step (kind, name, direction): count, failures, mean and max of ``duration_s`` over all its entries, and the
  last entry's duration and outcome;
- database size: ``db_size_after`` of each finished entry over time; the change over the period is the last known
  size minus the first known one (the earliest ``db_size_before``, else the earliest ``db_size_after``);
- Dagster metadata (``metrics``): the aggregates above plus, per step label, ``duration_s/<label>`` (its last
  duration) and ``max_duration_s/<label>``, for the ``MAX_METADATA_STEPS`` most recently run labels.

Modules: ``figures`` (the numbers), ``tables`` (the terminal), ``chart`` (the PNG). May import: ``tradedb.schema``
and ``tradedb.core``.
"""

from tradedb.ops.report.chart import default_chart_path, latest_chart_path, reports_dir, write_chart
from tradedb.ops.report.figures import (
    MAX_METADATA_STEPS,
    Report,
    build,
    collect,
    metadata_steps,
    metrics,
    slowest_markdown,
    step_label,
    to_json_text,
)
from tradedb.ops.report.tables import render

__all__ = [
    "MAX_METADATA_STEPS",
    "Report",
    "build",
    "collect",
    "default_chart_path",
    "latest_chart_path",
    "metadata_steps",
    "metrics",
    "render",
    "reports_dir",
    "slowest_markdown",
    "step_label",
    "to_json_text",
    "write_chart",
]
