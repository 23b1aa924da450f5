"""Progress of a data-migration run, and the reporters that show it (terminal bar, log lines)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

RATE_WINDOW_SECONDS = 120.0  # the rate (and so the ETA) is measured over the last two minutes of wall time


@dataclass(frozen=True)
class Progress:
    """A snapshot the engine hands to reporters after each batch."""

    name: str
    rows_done: int
    rows_total: int
    rows_per_s: float
    batch_size: int
    batches: int
    retries: int = 0
    throttled: str | None = None
    """Why the run is held back right now (None when it is not)."""
    throttled_for: float = 0.0
    """How long the current hold has lasted, in seconds."""
    throttled_seconds: float = 0.0
    """All the time this run has been held back so far."""

    @property
    def eta_seconds(self) -> float | None:
        """Rows left over the recent wall-clock rate, which includes time spent throttled (``RateWindow``)."""
        left = max(self.rows_total - self.rows_done, 0)
        return left / self.rows_per_s if self.rows_per_s > 0 else None

    def describe(self) -> str:
        eta = self.eta_seconds
        pct = 100.0 * self.rows_done / self.rows_total if self.rows_total else 100.0
        line = (
            f"{self.name}: {self.rows_done}/{self.rows_total} rows ({pct:.0f}%), {self.rows_per_s:,.0f} rows/s, "
            f"batch {self.batch_size}, ETA {'-' if eta is None else f'{eta:.0f}s'}"
        )
        if self.throttled:
            line += f", throttled for {self.throttled_for:.0f}s: {self.throttled}"
        if self.throttled_seconds:
            line += f" ({self.throttled_seconds:.0f}s throttled in all)"
        return line


class RateWindow:
    """Rows per second over the last ``seconds`` of wall time, pauses included.

    An ETA from batch time alone promises what a throttled run will not deliver; the wall clock over the last
    minutes says how fast the run really goes, and forgets a slow start.
    """

    def __init__(self, seconds: float = RATE_WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, rows_done: int, now: float | None = None) -> float:
        """Record the rows done so far at ``now`` (monotonic seconds) and return the rate."""
        now = time.monotonic() if now is None else now
        self.samples.append((now, rows_done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.seconds:
            self.samples.popleft()
        return self.rate()

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, r0), (t1, r1) = self.samples[0], self.samples[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0


Reporter = Callable[[Progress], None]


def log_reporter(logger: logging.Logger | logging.LoggerAdapter, every_seconds: float = 2.0) -> Reporter:
    """Log a progress line at most every ``every_seconds`` (and always the last one)."""
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= every_seconds or p.rows_done >= p.rows_total:
            last[0] = now
            logger.info(p.describe())

    return report
