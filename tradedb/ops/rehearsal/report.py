"""What a rehearsal measured: seconds and longest lock per step, rows, checks, the round trip.

Stored as JSON in the Dagster rehearsal asset's metadata; the production schedule, the long-run alert and the
plan read it back (the plan scales each data migration's time to production's rows: ``scaled_seconds``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from tradedb.core.errors import TradeDBError
from tradedb.ops.rehearsal.sampler import SAMPLE_MS

REPORT_FORMAT = 1  # bump when the JSON shape changes incompatibly


@dataclass
class StepMeasurement:
    """One rehearsed step: how long it took, its longest ACCESS EXCLUSIVE lock, rows for data migrations.

    A data step also records what it was rehearsed on (``table_rows`` in its table and ``pending_rows`` needing it
    when it started) and how much of its time went into batches (``batch_seconds``), so an estimate for a bigger
    or smaller production can scale the batches' share by the rows (``scaled_seconds``). Reports written before
    these figures existed read back with them as None.
    """

    kind: str
    name: str
    feature: str
    seconds: float
    longest_lock_ms: float = 0.0
    lock_relation: str | None = None
    rows: int | None = None
    quarantined: int | None = None
    detail: str = ""
    table_rows: int | None = None
    pending_rows: int | None = None
    batch_seconds: float | None = None

    def scaled_seconds(self, rows_now: int, basis: str) -> tuple[float | None, str]:
        """This step's duration for ``rows_now`` rows, and how it was reached (for the plan to say).

        ``basis`` names what ``rows_now`` counts: ``pending`` (rows needing the migration) or ``table`` (all rows
        of its table, when the migration cannot be asked yet because its revision is pending). The time spent in
        batches is proportional to the rows; the rest (planning slices, the completeness check) is not, and is
        kept as measured. None when the rehearsal walked no rows but production has some: nothing to scale from.
        """
        rehearsed = self.pending_rows if basis == "pending" else self.table_rows
        if rehearsed is None or self.batch_seconds is None:
            return (
                self.seconds,
                f"as rehearsed ({self.seconds:,.1f} s; the report has no row counts to scale by)",
            )
        what = "rows needing it" if basis == "pending" else "rows in its table"
        if rehearsed == 0:
            if rows_now == 0:
                return self.seconds, f"as rehearsed (no {what} then or now)"
            return None, f"rehearsed on no {what}; production has {rows_now:,}: run `tradedb rehearse` again"
        factor = rows_now / rehearsed
        work = min(self.batch_seconds, self.seconds)
        estimate = self.seconds - work + work * factor
        return estimate, (
            f"{self.seconds:,.2f} s rehearsed on {rehearsed:,} {what}, production {rows_now:,}: "
            f"batches x{factor:,.2f}"
        )

    @property
    def lock_text(self) -> str:
        """The lock figure as an operator should read it: a lock seen once was held under one sampling period."""
        if self.lock_relation is None:
            return "none seen"
        if self.longest_lock_ms < SAMPLE_MS:
            return f"< {SAMPLE_MS} ms on {self.lock_relation}"
        return f"{self.longest_lock_ms:,.0f} ms on {self.lock_relation}"


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    violations: int = 0
    description: str = ""
    skipped: str | None = None
    sample: list[dict] = field(default_factory=list)


@dataclass
class RehearsalReport:
    """Everything a rehearsal measured; ``to_json``/``from_json`` round-trip it through Dagster metadata."""

    fingerprint: str
    environment: str
    source: str
    started_at: datetime
    head: str
    finished_at: datetime | None = None
    start_revision: str | None = None
    steps: list[StepMeasurement] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    round_trip_ok: bool | None = None
    round_trip_differences: list[str] = field(default_factory=list)
    round_trip_expected: list[str] = field(default_factory=list)
    round_trip_exempt: dict[str, str] = field(default_factory=dict)
    downgrade_seconds: float | None = None
    reupgrade_seconds: float | None = None
    table_rows: dict[str, int] = field(default_factory=dict)
    lock_sampling: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.finished_at is not None
            and all(c.passed for c in self.checks)
            and bool(self.round_trip_ok)
        )

    @property
    def deploy_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = _iso(self.started_at)
        data["finished_at"] = _iso(self.finished_at)
        data["ok"] = self.ok
        data["format"] = REPORT_FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> RehearsalReport:
        data = json.loads(data) if isinstance(data, str) else dict(data)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["started_at"] = datetime.fromisoformat(values["started_at"])
        values["finished_at"] = values.get("finished_at") and datetime.fromisoformat(values["finished_at"])
        values["steps"] = [StepMeasurement(**s) for s in values.get("steps", [])]
        values["checks"] = [CheckOutcome(**c) for c in values.get("checks", [])]
        return cls(**values)

    def summary(self) -> list[str]:
        """Readable lines for the CLI and run logs."""
        lines = [
            f"rehearsal {self.fingerprint} of {self.environment}: {self.start_revision or 'empty'} -> {self.head}"
            f", staging from {self.source}"
        ]
        lines += [f"  {_step_line(s)}" for s in self.steps]
        failing = [c.name for c in self.checks if not c.passed]
        lines.append(f"checks: {len(self.checks) - len(failing)}/{len(self.checks)} passed")
        if failing:
            lines.append(f"failing checks: {', '.join(failing)}")
        lines.append(f"round trip: {_round_trip_text(self)}")
        if self.error:
            lines.append(f"stopped: {self.error}")
        return lines


def _step_line(s: StepMeasurement) -> str:
    rows = "" if s.rows is None else f", {s.rows:,} rows ({s.quarantined or 0:,} quarantined)"
    if s.pending_rows is not None:
        rows += f" of {s.pending_rows:,} pending"
    return f"{s.kind:6} {s.name:38} {s.seconds:8.2f} s, lock {s.lock_text}{rows}"


def _round_trip_text(report: RehearsalReport) -> str:
    if report.round_trip_ok is None:
        return "not run"
    if not report.round_trip_ok:
        return "FAILED: " + "; ".join(report.round_trip_differences)
    expected = (
        f"; expected changes: {'; '.join(report.round_trip_expected)}" if report.round_trip_expected else ""
    )
    return f"ok (down {report.downgrade_seconds} s, up again {report.reupgrade_seconds} s){expected}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class RehearsalFailed(TradeDBError):
    """A rehearsal step failed; ``report`` holds everything measured up to it."""

    def __init__(self, report: RehearsalReport, message: str) -> None:
        super().__init__(message)
        self.report = report
