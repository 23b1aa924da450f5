"""The report's numbers: tallies, per-step durations and database size over a period, from the ledger.

Also what Dagster's ``reports/<env>`` asset shows (``metrics``, ``slowest_markdown``) and the JSON output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.schema import ledger

STEP_KINDS = ("schema", "data")

NOT_A_RUN = ("override",)  # kinds left out of the overall tally

DEFAULT_SLOWEST = 5  # rows in the "slowest steps" table

MAX_METADATA_STEPS = 40  # step labels with their own metadata keys (the most recently run; 2 keys each)

DURATION_KEY = "duration_s/"  # + step label: the label's last duration in the period

MAX_DURATION_KEY = "max_duration_s/"  # + step label: the label's longest duration in the period

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


def size_unit(largest: int) -> tuple[str, int]:
    """The unit that shows ``largest`` as a number of at least 1."""
    return next(((u, f) for u, f in SIZE_UNITS if abs(largest) >= f), SIZE_UNITS[-1])


def format_size(value: int | None) -> str:
    if value is None:
        return "-"
    unit, factor = size_unit(value)
    return f"{value} B" if factor == 1 else f"{value / factor:.1f} {unit}"


def format_signed_size(value: int) -> str:
    return ("+" if value >= 0 else "-") + format_size(abs(value))


def to_json_text(report: Report, chart: Path | None = None) -> str:
    """The JSON the CLI prints (with the chart's path when one was written)."""
    data = report.to_json()
    if chart is not None:
        data["chart"] = str(chart)
    return json.dumps(data, indent=2, default=str)
