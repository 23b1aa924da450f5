"""The report's PNG chart (matplotlib): step durations and database size over the period.

``tradedb report`` writes a new timestamped chart each time; the drift watch's ``reports/<env>`` asset overwrites
``<env>_latest.png``. The folder is ``TRADEDB_REPORTS_DIR`` (default ``reports/``, git-ignored).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC
from pathlib import Path

from tradedb.core.paths import project_root
from tradedb.ops.report.figures import Report, format_signed_size, size_unit

REPORTS_DIR = "reports"  # under the project root, git-ignored

REPORTS_DIR_VARIABLE = "TRADEDB_REPORTS_DIR"  # where charts go instead (tests point it at a temp folder)

LATEST_CHART_SUFFIX = "_latest.png"  # reports/<env>_latest.png: the monitoring asset's chart per environment

OUTCOME_COLOURS = {"success": "#2e7d32", "failure": "#c62828", "stopped": "#ef6c00"}

MAX_CHART_STEPS = 40  # step rows in the duration panel (the slowest by max duration; the rest are summarised)

LOG_SCALE_SPREAD = 100  # durations spanning more than this factor get a log axis


def reports_dir() -> Path:
    """Where charts go unless told otherwise: ``TRADEDB_REPORTS_DIR``, else ``reports/`` under the project root."""
    if os.environ.get(REPORTS_DIR_VARIABLE):
        return Path(os.environ[REPORTS_DIR_VARIABLE])
    return project_root() / REPORTS_DIR


def default_chart_path(report: Report) -> Path:
    """``reports/<env>_<UTC timestamp>.png``: the CLI's chart, one per ``tradedb report`` run.

    These are kept (never pruned): each is written because an operator asked for that report, so they accumulate
    only as fast as people run the command, and one may be attached to a ticket or a review. The scheduled
    monitoring asset, which runs every hour unattended, writes ``latest_chart_path`` instead.
    """
    stamp = report.generated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return reports_dir() / f"{report.environment or 'all'}_{stamp}.png"


def latest_chart_path(environment: str | None) -> Path:
    """``reports/<env>_latest.png``: the monitoring asset's chart, overwritten on every materialisation.

    One fixed file per environment keeps ``reports/`` from growing with every drift-watch tick; the history the
    chart would otherwise keep is in the asset's plotted metadata (and the ledger itself).
    """
    return reports_dir() / f"{environment or 'all'}{LATEST_CHART_SUFFIX}"


def write_chart(report: Report, path: Path | str | None = None) -> Path:
    """Draw step durations per run (by step, coloured by outcome) and database size over time into a PNG.

    Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, so no global state and no display,
    which keeps it safe inside Dagster's run process and its threads. The PNG is written to a temporary file
    beside ``path`` and renamed over it, so a chart that is overwritten (``latest_chart_path``) is never seen
    half-written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(path) if path else default_chart_path(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = _chart_labels(report)
    height = 2.8 + max(2.2, 0.28 * len(labels)) + 0.5
    fig = Figure(figsize=(11, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=[max(2.2, 0.28 * len(labels)), 2.8])
    _draw_durations(top, report, labels)
    _draw_sizes(bottom, report)
    period = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "whole ledger"
    fig.suptitle(f"tradedb run report - {report.environment or 'all environments'} ({period})", fontsize=12)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")  # usual permissions, unlike mkstemp's 0600
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")  # long step names stay whole
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _chart_labels(report: Report) -> list[str]:
    """Step rows for the duration panel, in first-seen order; only the slowest ones when there are very many."""
    labels = list(dict.fromkeys(s.label for s in report.timeline))
    if len(labels) > MAX_CHART_STEPS:
        keep = {s.label for s in sorted(report.steps, key=lambda s: s.max_s, reverse=True)[:MAX_CHART_STEPS]}
        labels = [label for label in labels if label in keep]
    return labels


def _draw_durations(ax, report: Report, labels: list[str]) -> None:
    ax.set_title("step durations, one dot per run (by step, coloured by outcome)", fontsize=10, loc="left")
    if not labels:
        ax.text(
            0.5,
            0.5,
            "no schema or data steps in this period",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    row = {label: i for i, label in enumerate(labels)}
    for outcome, colour in OUTCOME_COLOURS.items():
        points = [
            (s.duration_s, row[s.label]) for s in report.timeline if s.outcome == outcome and s.label in row
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(
                xs,
                ys,
                s=36,
                c=colour,
                alpha=0.8,
                label=f"{outcome} ({len(points)})",
                edgecolors="white",
                linewidths=0.5,
                zorder=3,  # dots over the mean bar
            )
    means = {s.label: s.mean_s for s in report.steps}
    ax.scatter(
        [means[label] for label in labels], range(len(labels)), marker="|", s=220, c="#333333", label="mean"
    )
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first step at the top, as in the history
    durations = [s.duration_s for s in report.timeline if s.duration_s > 0]
    if durations and max(durations) / max(min(durations), 1e-3) > LOG_SCALE_SPREAD:
        ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _draw_sizes(ax, report: Report) -> None:
    change = (
        "" if report.size_change is None else f" ({format_signed_size(report.size_change)} over the period)"
    )
    ax.set_title(f"database size after each step{change}", fontsize=10, loc="left")
    if not report.sizes:
        ax.text(
            0.5,
            0.5,
            "no database sizes recorded in this period",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    unit, factor = size_unit(max(p.bytes for p in report.sizes))
    xs = [p.at for p in report.sizes]
    ys = [p.bytes / factor for p in report.sizes]
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, color="#1565c0")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
