"""Run reports: what the ledger says about an environment over a period, as numbers, tables and a chart.

The strategy's key metrics are execution time, success/failure rate, schema drift and database size changes; this
module answers all but drift (``tradedb drift``) from ``tradedb.schema.ledger`` alone, so a report needs no Dagster
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
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tradedb.core.db import connect_checked
from tradedb.core.paths import project_root
from tradedb.core.settings import Environment
from tradedb.schema import ledger

STEP_KINDS = ("schema", "data")
NOT_A_RUN = ("override",)  # kinds left out of the overall tally
DEFAULT_SLOWEST = 5  # rows in the "slowest steps" table
REPORTS_DIR = "reports"  # under the project root, git-ignored
REPORTS_DIR_VARIABLE = "TRADEDB_REPORTS_DIR"  # where charts go instead (tests point it at a temp folder)
LATEST_CHART_SUFFIX = "_latest.png"  # reports/<env>_latest.png: the monitoring asset's chart per environment
MAX_METADATA_STEPS = 40  # step labels with their own metadata keys (the most recently run; 2 keys each)
DURATION_KEY = "duration_s/"  # + step label: the label's last duration in the period
MAX_DURATION_KEY = "max_duration_s/"  # + step label: the label's longest duration in the period
OUTCOME_COLOURS = {"success": "#2e7d32", "failure": "#c62828", "stopped": "#ef6c00"}
MAX_CHART_STEPS = 40  # step rows in the duration panel (the slowest by max duration; the rest are summarised)
LOG_SCALE_SPREAD = 100  # durations spanning more than this factor get a log axis
SIZE_UNITS = (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024), ("B", 1))  # largest first


@dataclass(frozen=True)
class Tally:
    """Outcomes of a group of entries."""

    total: int = 0
    successes: int = 0
    failures: int = 0
    stopped: int = 0

    @property
    def success_rate(self) -> float | None:
        rated = self.successes + self.failures
        return self.successes / rated if rated else None

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> Tally:
        outcomes = [r["outcome"] for r in rows]
        return cls(
            total=len(outcomes),
            successes=outcomes.count("success"),
            failures=outcomes.count("failure"),
            stopped=outcomes.count("stopped"),
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "success_rate": self.success_rate}


@dataclass(frozen=True)
class StepRun:
    """One execution of a step, as the chart and the slowest table show it."""

    kind: str
    name: str
    direction: str
    started_at: datetime
    duration_s: float
    outcome: str
    launched_by: str

    @property
    def label(self) -> str:
        return step_label(self.kind, self.name, self.direction)


@dataclass(frozen=True)
class StepStats:
    """Every execution of one (kind, name, direction) in the period."""

    kind: str
    name: str
    direction: str
    count: int
    failures: int
    mean_s: float
    max_s: float
    last_s: float
    last_outcome: str
    last_at: datetime

    @property
    def label(self) -> str:
        return step_label(self.kind, self.name, self.direction)


@dataclass(frozen=True)
class SizePoint:
    at: datetime
    bytes: int


@dataclass
class Report:
    """What the ledger says about one environment since a time; build it with ``build`` or ``collect``."""

    environment: str | None
    since: datetime | None
    generated_at: datetime
    entries: int
    first_at: datetime | None
    last_at: datetime | None
    overall: Tally
    by_kind: dict[str, Tally]
    steps: list[StepStats]
    slowest: list[StepRun]
    timeline: list[StepRun]
    sizes: list[SizePoint]
    size_start: int | None
    downgrades: int
    stamps: int
    reverts: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.entries == 0

    @property
    def size_end(self) -> int | None:
        return self.sizes[-1].bytes if self.sizes else None

    @property
    def size_change(self) -> int | None:
        if self.size_start is None or self.size_end is None:
            return None
        return self.size_end - self.size_start

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only (times as ISO strings)."""
        return {
            "environment": self.environment,
            "since": _iso(self.since),
            "generated_at": _iso(self.generated_at),
            "entries": self.entries,
            "first_at": _iso(self.first_at),
            "last_at": _iso(self.last_at),
            "overall": self.overall.to_json(),
            "by_kind": {k: t.to_json() for k, t in self.by_kind.items()},
            "steps": [_row(s) for s in self.steps],
            "slowest": [_row(s) for s in self.slowest],
            "sizes": [{"at": _iso(p.at), "bytes": p.bytes} for p in self.sizes],
            "size_start": self.size_start,
            "size_end": self.size_end,
            "size_change": self.size_change,
            "downgrades": self.downgrades,
            "stamps": self.stamps,
            "reverts": self.reverts,
            "failures": self.failures,
            "metrics": metrics(self),
        }


def step_label(kind: str, name: str, direction: str) -> str:
    """``0013``, ``0013 downgrade``, ``execution.backfill_trade_notional``, ``... revert``."""
    usual = {"schema": "upgrade", "data": "run"}.get(kind)
    return name if direction == usual else f"{name} {direction}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _row(obj: StepRun | StepStats) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(obj).items()} | {
        "label": obj.label
    }


# ------------------------------------------------------------------------------------------------ building


def build(
    rows: list[dict[str, Any]],
    *,
    environment: str | None = None,
    since: datetime | None = None,
    slowest: int = DEFAULT_SLOWEST,
    now: datetime | None = None,
) -> Report:
    """Summarise ledger rows (as ``ledger.entries`` returns them, oldest first) into a ``Report``."""
    rows = sorted(rows, key=lambda r: (r["started_at"], r.get("id") or 0))
    step_rows = [r for r in rows if r["kind"] in STEP_KINDS]
    timeline = [_step_run(r) for r in step_rows]
    present = {r["kind"] for r in rows}
    kinds = [k for k in STEP_KINDS if k in present] + sorted(present - set(STEP_KINDS))
    return Report(
        environment=environment,
        since=since,
        generated_at=now or datetime.now(UTC),
        entries=len(rows),
        first_at=rows[0]["started_at"] if rows else None,
        last_at=max((r["finished_at"] for r in rows), default=None),
        overall=Tally.of([r for r in rows if r["kind"] not in NOT_A_RUN]),
        by_kind={k: Tally.of([r for r in rows if r["kind"] == k]) for k in kinds},
        steps=_step_stats(step_rows),
        slowest=sorted(timeline, key=lambda s: s.duration_s, reverse=True)[: max(0, slowest)],
        timeline=timeline,
        sizes=_sizes(rows),
        size_start=_size_start(rows),
        downgrades=sum(r["direction"] == "downgrade" for r in rows),
        stamps=sum(r["direction"] == "stamp" for r in rows),
        reverts=sum(r["direction"] == "revert" for r in rows),
        failures=[
            {
                "kind": r["kind"],
                "name": r["name"],
                "direction": r["direction"],
                "started_at": _iso(r["started_at"]),
                "error": r.get("error"),
            }
            for r in rows
            if r["outcome"] == "failure"
        ],
    )


def _step_run(r: dict[str, Any]) -> StepRun:
    return StepRun(
        r["kind"],
        r["name"],
        r["direction"],
        r["started_at"],
        float(r["duration_s"]),
        r["outcome"],
        r["launched_by"],
    )


def _step_stats(step_rows: list[dict[str, Any]]) -> list[StepStats]:
    """One line per (kind, name, direction), in the order each was first seen."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in step_rows:
        groups.setdefault((r["kind"], r["name"], r["direction"]), []).append(r)
    out = []
    for (kind, name, direction), group in groups.items():
        durations = [float(r["duration_s"]) for r in group]
        last = group[-1]
        out.append(
            StepStats(
                kind=kind,
                name=name,
                direction=direction,
                count=len(group),
                failures=sum(r["outcome"] == "failure" for r in group),
                mean_s=sum(durations) / len(durations),
                max_s=max(durations),
                last_s=durations[-1],
                last_outcome=last["outcome"],
                last_at=last["started_at"],
            )
        )
    return out


def _sizes(rows: list[dict[str, Any]]) -> list[SizePoint]:
    points = [
        SizePoint(r["finished_at"], int(r["db_size_after"]))
        for r in rows
        if r.get("db_size_after") is not None
    ]
    return sorted(points, key=lambda p: p.at)


def _size_start(rows: list[dict[str, Any]]) -> int | None:
    for r in rows:
        if r.get("db_size_before") is not None:
            return int(r["db_size_before"])
        if r.get("db_size_after") is not None:
            return int(r["db_size_after"])
    return None


def collect(env: Environment, *, since: datetime | None = None, slowest: int = DEFAULT_SLOWEST) -> Report:
    """Read ``env``'s ledger (its own entries only) and build the report."""

    with connect_checked(env) as conn:
        rows = ledger.entries(conn, since=since, environment=env.name)
    return build(rows, environment=env.name, since=since, slowest=slowest)


# ------------------------------------------------------------------------------------------------ numbers for Dagster


def metrics(report: Report) -> dict[str, float | int]:
    """Flat numbers for Dagster metadata (the UI plots numeric metadata across runs); undefined ones are left out.

    Besides the aggregates, each step label (``0002``, ``0002 downgrade``, ``execution.backfill_trade_notional``;
    revision ids and ``<domain>.<name>`` data migrations cannot collide) gets ``duration_s/<label>``, its last
    duration, and ``max_duration_s/<label>``, its longest, so every revision and data migration has its own plot.
    Only the ``MAX_METADATA_STEPS`` labels run most recently get keys (in first-seen order), so a long ledger
    does not make hundreds of metadata entries; older labels keep their last plotted points in the UI.
    """
    steps = report.timeline
    out: dict[str, float | int] = {
        "total_runs": report.overall.total,
        "successes": report.overall.successes,
        "failures": report.overall.failures,
        "downgrades": report.downgrades,
        "stamps": report.stamps,
    }
    optional: dict[str, float | int | None] = {
        "success_rate": report.overall.success_rate,
        "schema_success_rate": report.by_kind.get("schema", Tally()).success_rate,
        "data_success_rate": report.by_kind.get("data", Tally()).success_rate,
        "db_size_bytes": report.size_end,
        "db_size_change_bytes": report.size_change,
        "slowest_step_s": max((s.duration_s for s in steps), default=None),
        "mean_step_s": sum(s.duration_s for s in steps) / len(steps) if steps else None,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    for s in metadata_steps(report):
        out[DURATION_KEY + s.label] = s.last_s
        out[MAX_DURATION_KEY + s.label] = s.max_s
    return out


def metadata_steps(report: Report, limit: int = MAX_METADATA_STEPS) -> list[StepStats]:
    """The ``limit`` step labels run most recently, in first-seen order (as ``report.steps`` lists them)."""
    recent = sorted(range(len(report.steps)), key=lambda i: report.steps[i].last_at, reverse=True)
    keep = set(recent[: max(0, limit)])
    return [s for i, s in enumerate(report.steps) if i in keep]


def slowest_markdown(report: Report) -> str | None:
    """The slowest-steps table as Markdown (for a Dagster ``MetadataValue.md``); None when there were no steps."""
    if not report.slowest:
        return None
    lines = [
        "| step | kind | started (UTC) | seconds | outcome | launched by |",
        "|---|---|---|--:|---|---|",
    ]
    for s in report.slowest:
        cells = (
            s.label,
            s.kind,
            f"{s.started_at:%Y-%m-%d %H:%M}",
            f"{s.duration_s:.2f}",
            s.outcome,
            s.launched_by,
        )
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------------------------ rendering


def render(report: Report, console: Console) -> None:
    """Print the report as rich tables."""
    period = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "whole ledger"
    console.print(f"[bold]run report: {report.environment or 'all environments'}[/] ({period})")
    if report.empty:
        console.print("no ledger entries in this period: nothing to report")
        return
    console.print(
        f"{report.entries} entries from {report.first_at:%Y-%m-%d %H:%M} to {report.last_at:%Y-%m-%d %H:%M} UTC"
    )
    console.print(_outcomes_table(report))
    console.print(_steps_table(report))
    console.print(_slowest_table(report))
    console.print(_size_line(report))
    console.print(
        f"downgrades: {report.downgrades}   stamps: {report.stamps}   data reverts: {report.reverts}"
    )
    for f in report.failures[-5:]:
        when = f["started_at"][:16].replace("T", " ")
        what = escape(f"{step_label(f['kind'], f['name'], f['direction'])}: {f['error'] or ''}")
        console.print(f"[red]failure[/] {when} {what}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _outcomes_table(report: Report) -> Table:
    table = Table(title="outcomes", title_justify="left")
    for column in ("kind", "total", "success", "failure", "stopped", "success rate"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    rows = [(k, t) for k, t in report.by_kind.items()] + [("overall", report.overall)]
    for name, t in rows:
        style = "bold" if name == "overall" else None
        table.add_row(
            name,
            str(t.total),
            str(t.successes),
            str(t.failures),
            str(t.stopped),
            _rate(t.success_rate),
            style=style,
        )
    return table


def _steps_table(report: Report) -> Table:
    table = Table(title="steps", title_justify="left")
    for column in ("kind", "step", "runs", "failures", "mean s", "max s", "last s", "last outcome"):
        table.add_column(
            column,
            justify="right" if column.endswith(("s", "runs", "failures")) and column != "kind" else "left",
        )
    for s in report.steps:
        colour = (
            "red" if s.last_outcome == "failure" else "green" if s.last_outcome == "success" else "yellow"
        )
        table.add_row(
            s.kind,
            escape(s.label),
            str(s.count),
            str(s.failures),
            f"{s.mean_s:.2f}",
            f"{s.max_s:.2f}",
            f"{s.last_s:.2f}",
            f"[{colour}]{s.last_outcome}[/]",
        )
    return table


def _slowest_table(report: Report) -> Table:
    table = Table(title=f"slowest {len(report.slowest)} step(s)", title_justify="left")
    for column in ("step", "kind", "started (UTC)", "seconds", "outcome", "launched by"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for s in report.slowest:
        table.add_row(
            escape(s.label),
            s.kind,
            f"{s.started_at:%Y-%m-%d %H:%M}",
            f"{s.duration_s:.2f}",
            s.outcome,
            escape(s.launched_by),
        )
    return table


def _size_line(report: Report) -> str:
    if report.size_end is None:
        return "database size: not recorded"
    return (
        f"database size: {_size(report.size_start)} -> {_size(report.size_end)} "
        f"({_signed_size(report.size_change or 0)} over the period)"
    )


def _size_unit(largest: int) -> tuple[str, int]:
    """The unit that shows ``largest`` as a number of at least 1."""
    return next(((u, f) for u, f in SIZE_UNITS if abs(largest) >= f), SIZE_UNITS[-1])


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    unit, factor = _size_unit(value)
    return f"{value} B" if factor == 1 else f"{value / factor:.1f} {unit}"


def _signed_size(value: int) -> str:
    return ("+" if value >= 0 else "-") + _size(abs(value))


# ------------------------------------------------------------------------------------------------ chart


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
    change = "" if report.size_change is None else f" ({_signed_size(report.size_change)} over the period)"
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

    unit, factor = _size_unit(max(p.bytes for p in report.sizes))
    xs = [p.at for p in report.sizes]
    ys = [p.bytes / factor for p in report.sizes]
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, color="#1565c0")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)


def to_json_text(report: Report, chart: Path | None = None) -> str:
    """The JSON the CLI prints (with the chart's path when one was written)."""
    data = report.to_json()
    if chart is not None:
        data["chart"] = str(chart)
    return json.dumps(data, indent=2, default=str)
