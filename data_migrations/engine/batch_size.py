"""Batch sizing: a pure function, like GitLab's batch optimizer.

Rule: from the last ``WINDOW`` batches, estimate seconds per row and aim the next batch at ``TARGET_SECONDS``
(short enough that no lock is held long, long enough that per-batch overhead stays small). Keep the size while the
recent efficiency (seconds / target) is inside ``EFFICIENCY_BAND`` so sizes do not jitter; otherwise move towards
the ideal, growing at most ``MAX_GROWTH`` per step (a run of cheap rows must not produce one batch that then holds
locks for long) and shrinking at most to ``MIN_SHRINK`` (fast, but not to nothing on one outlier); always within
``MIN_BATCH``..``MAX_BATCH``.
"""

from __future__ import annotations

from collections.abc import Sequence

TARGET_SECONDS = 0.25  # a batch holds its row locks about this long: the app's worst extra wait
MIN_BATCH = 100  # below this the per-batch overhead dominates
MAX_BATCH = 50_000  # above this one batch's locks and WAL burst get noticeable for concurrent writers
INITIAL_BATCH = 2_000  # a first guess; the optimizer corrects it within a few batches
MAX_GROWTH = 1.5  # grow at most 50% per batch
MIN_SHRINK = 0.5  # shrink at most to half per batch
EFFICIENCY_BAND = (0.85, 1.10)  # within this share of the target, keep the size
WINDOW = 20  # estimate seconds per row over the last this many batches


def next_batch_size(
    current: int,
    recent: Sequence[tuple[int, float]],
    target: float = TARGET_SECONDS,
    minimum: int = MIN_BATCH,
    maximum: int = MAX_BATCH,
) -> int:
    """Return the next batch size from ``recent`` (rows in range, seconds) pairs, newest last."""
    window = [(rows, secs) for rows, secs in list(recent)[-WINDOW:] if rows > 0]
    if not window:
        return max(minimum, min(maximum, current))
    rows = sum(r for r, _ in window)
    seconds = sum(s for _, s in window)
    last_rows, last_seconds = window[-1]
    if EFFICIENCY_BAND[0] <= last_seconds / target <= EFFICIENCY_BAND[1]:
        return max(minimum, min(maximum, current))
    ideal = current * MAX_GROWTH if seconds <= 0 else target * rows / seconds
    bounded = min(current * MAX_GROWTH, max(current * MIN_SHRINK, ideal))
    return max(minimum, min(maximum, int(bounded)))


def split(size: int, minimum: int = MIN_BATCH) -> int:
    """Return the size to retry a batch that keeps timing out with: half, not below the minimum."""
    return max(minimum, size // 2)
