"""Progress of a data-migration run, and the reporters that show it (terminal bar, log lines)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


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

    @property
    def eta_seconds(self) -> float | None:
        left = max(self.rows_total - self.rows_done, 0)
        return left / self.rows_per_s if self.rows_per_s > 0 else None

    def describe(self) -> str:
        eta = self.eta_seconds
        pct = 100.0 * self.rows_done / self.rows_total if self.rows_total else 100.0
        return (
            f"{self.name}: {self.rows_done}/{self.rows_total} rows ({pct:.0f}%), {self.rows_per_s:,.0f} rows/s, "
            f"batch {self.batch_size}, ETA {'-' if eta is None else f'{eta:.0f}s'}"
            + (f", throttled: {self.throttled}" if self.throttled else "")
        )


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
