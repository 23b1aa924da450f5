"""Should a run start now? The schedule's launch decision and the in-run gate, from the same policy.

The Dagster schedule, the in-run gate, the data-migration deadline and the CLI must all agree on "is this inside
a window, and until when", so they all ask these functions with an explicit ``now`` (frozen clocks in tests,
``--now`` on the CLI).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tradedb.core.errors import TradeDBError
from tradedb.ops.windows.formatting import format_duration, format_local
from tradedb.ops.windows.intervals import utc
from tradedb.ops.windows.loading import policy
from tradedb.ops.windows.model import SEARCH_STEP, Window, WindowPolicy

FIT_SEARCH_HORIZON = timedelta(days=62)


@dataclass(frozen=True)
class Decision:
    """What the schedule should do at ``now``: launch (with a deadline for data migrations) or skip, and why."""

    launch: bool
    reason: str
    window: Window | None
    deadline: datetime | None

    @property
    def run_key(self) -> str | None:
        """One launch per window: a stable Dagster run key from the window's start (None when always open).

        Seconds appear only for a window starting at a second other than zero, so keys of minute windows stay as
        they were.
        """
        if not self.launch or self.window is None or self.window.open_ended:
            return None
        seconds = f"{self.window.start:%S}" if self.window.start.second else ""
        return f"window-{self.window.start:%Y%m%dT%H%M}{seconds}Z"


@dataclass(frozen=True)
class GateResult:
    """The in-run gate's verdict; ``overridden`` runs carry the operator's reason for the audit record."""

    allowed: bool
    reason: str
    window: Window | None
    deadline: datetime | None
    overridden: bool = False
    override_reason: str | None = None


def decide_launch(
    policy: WindowPolicy, now: datetime, *, pending_steps: int, estimated_seconds: float | None
) -> Decision:
    """Should the scheduled production deploy start at ``now``?

    Skips when nothing is pending, when outside a window (or in its last ``margin``), and when the estimated
    duration of the pending steps (``Plan.estimated_seconds``: the rehearsal's, data migrations scaled to
    production's rows) does not fit before the deadline. Without a rehearsal estimate it launches (and
    says so) unless the policy has ``require_rehearsal``: the deadline still stops data migrations cleanly and the
    in-run gate still refuses a start outside the window, while never deploying until someone rehearses would let
    production fall silently behind.
    """
    now = utc(now)
    if pending_steps <= 0:
        return Decision(False, "nothing pending", policy.window_at(now), None)
    window = policy.window_at(now)
    if policy.always and window is not None:
        return Decision(
            True,
            f"{policy.environment} has no maintenance windows: launching {_steps(pending_steps)}",
            window,
            None,
        )
    if window is None:
        return Decision(False, closed_reason(policy, now), _next_or_none(policy, now), None)
    deadline = window.deadline
    left = window.left(now)
    until = f"{format_local(deadline, policy.tz)} (margin {format_duration(policy.margin)})"
    if estimated_seconds is None:
        if policy.require_rehearsal:
            return Decision(
                False,
                f"no rehearsal estimate for {_steps(pending_steps)} and {policy.environment} requires one: "
                "rehearse on staging first",
                window,
                None,
            )
        return Decision(
            True,
            f"launching {_steps(pending_steps)} without a rehearsal estimate; {format_duration(left)} left, "
            f"data migrations stop at {until}",
            window,
            deadline,
        )
    estimate = timedelta(seconds=max(0.0, float(estimated_seconds)))
    if estimate > left:
        return Decision(
            False,
            f"the estimated duration {format_duration(estimate)} of {_steps(pending_steps)} (rehearsed, scaled to "
            f"production's rows) does not fit in the {format_duration(left)} left before {until}; "
            f"{_long_enough(policy, now, estimate)}",
            window,
            None,
        )
    return Decision(
        True,
        f"launching {_steps(pending_steps)}: estimated {format_duration(estimate)} (rehearsed, scaled to "
        f"production's rows), {format_duration(left)} left before {until}",
        window,
        deadline,
    )


def gate(
    env_name: str,
    now: datetime,
    *,
    override_reason: str | None = None,
    policies: Mapping[str, WindowPolicy] | None = None,
) -> GateResult:
    """The in-run check: may a run on ``env_name`` start at ``now``?

    Outside a window it is refused unless ``override_reason`` says why (a blank reason is refused too, so the
    audit trail always has one). Inside a window an override is not needed and is not recorded as one.
    """
    now = utc(now)
    pol = (policies or {}).get(env_name) or policy(env_name)
    window = pol.window_at(now)
    if window is not None:
        if pol.always:
            return GateResult(True, pol.describe(), window, None)
        return GateResult(
            True,
            f"inside the {pol.environment} maintenance window ({window.source}); runs stop by "
            f"{format_local(window.deadline, pol.tz)}",
            window,
            window.deadline,
        )
    refused = closed_reason(pol, now)
    if override_reason is None:
        return GateResult(
            False,
            f"{pol.environment} run refused: {refused}; launch inside the window or override with a reason",
            _next_or_none(pol, now),
            None,
        )
    reason = override_reason.strip()
    if not reason:
        return GateResult(
            False,
            f"{pol.environment} run refused: an override of the maintenance window needs a non-empty reason",
            _next_or_none(pol, now),
            None,
        )
    return GateResult(
        True,
        f"{pol.environment} maintenance window overridden ({refused}): {reason}",
        None,
        None,
        overridden=True,
        override_reason=reason,
    )


def require_window(
    env_name: str,
    now: datetime | None = None,
    *,
    override_reason: str | None = None,
    policies: Mapping[str, WindowPolicy] | None = None,
) -> GateResult:
    """``gate`` that raises ``TradeDBError`` (one line, the refusal) instead of returning a refusal."""
    result = gate(env_name, now or datetime.now(UTC), override_reason=override_reason, policies=policies)
    if not result.allowed:
        raise TradeDBError(result.reason)
    return result


def closed_reason(pol: WindowPolicy, now: datetime) -> str:
    """Why no run may start at ``now``: outside every window, or inside one but within its final margin."""
    raw = pol.raw_window_at(now)
    nxt = _next_or_none(pol, now)
    opens = f"next opens at {format_local(nxt.start, pol.tz)}" if nxt else "no window opens within a year"
    if raw is not None:
        return (
            f"too close to the end of the maintenance window (it ends {format_local(raw.end, pol.tz)} and keeps its "
            f"last {format_duration(pol.margin)} free; {opens})"
        )
    return f"outside the maintenance window ({opens})"


def _next_or_none(pol: WindowPolicy, now: datetime) -> Window | None:
    found = pol.upcoming(now, 1)
    return found[0] if found else None


def _long_enough(pol: WindowPolicy, now: datetime, estimate: timedelta) -> str:
    """Name the next window whose usable length holds the estimate, so the operator knows when it will run."""
    cursor = now
    while cursor < now + FIT_SEARCH_HORIZON:
        for w in pol.windows_between(cursor, cursor + SEARCH_STEP):
            if w.start > now and w.usable >= estimate:
                return f"the next window long enough opens {format_local(w.start, pol.tz)}"
        cursor += SEARCH_STEP
    return f"no window in the next {FIT_SEARCH_HORIZON.days} days is long enough"


def _steps(n: int) -> str:
    return f"{n} pending step(s)"
