"""Poison rows: when the database refuses a batch because of one row's values, find that row and set it aside.

A batch's write can fail on data no one predicted (invalid JSON text, a product that overflows its numeric
column, a date out of range, a check or unique violation caused by the row itself). Such a failure is about the
data, not the database: retrying the same batch fails the same way forever, and one row would block the
migration, the contract revisions behind it and the maintenance window.

Most refused rows are found inside the batch they spoiled, from how far the refused statement got
(``pinpoint``). This module holds what is left when that cannot name the row: the worker narrows its batches
around the refusal (``PoisonSearch``): the refused range is walked again in batches of half its rows, each its own
transaction with its own checkpoint; a half that goes through is kept, and once one does, the rest of the range is
known to hold the refusal and is halved again without being tried whole; a single row the database still refuses
is quarantined with its SQLSTATE and message. Every other row is migrated, and the batch size comes back. In
committed transactions, not savepoints of one batch: the refusal may need rows of two halves (a unique clash
between them), which only a commit between them separates, and a batch's row locks are held only as long as a
batch lasts. It costs about three quarters of a batch done again and 2 x log2(batch size) short transactions.

Only SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation) are isolated. Everything else (a
lock or statement timeout, a serialization failure, a dropped connection, a missing table) is about the database,
and keeps the engine's retry-then-fail behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

DATA_ERROR_CLASSES = ("22", "23")  # SQLSTATE classes: data exception, integrity constraint violation
REASON_DETAIL_CHARS = 300  # how much of the database's detail a quarantine reason keeps


def is_data_error(exc: BaseException) -> bool:
    """Whether the database refused a statement because of the values it was given (SQLSTATE class 22 or 23)."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None) or ""
    return isinstance(exc, DBAPIError) and code[:2] in DATA_ERROR_CLASSES


def database_reason(exc: BaseException) -> str:
    """The quarantine reason for a row the database refused: its SQLSTATE and its own words."""
    orig = getattr(exc, "orig", exc)
    diag = getattr(orig, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(orig).strip().splitlines()[0]).strip()
    detail = (getattr(diag, "message_detail", None) or "").strip()
    reason = f"the database refused the row: SQLSTATE {getattr(orig, 'pgcode', '?')} {message}"
    if detail:
        reason += f" ({detail[:REASON_DETAIL_CHARS]})"
    return reason


@dataclass
class PoisonSearch:
    """Where a worker is in narrowing its batches around a refused row (one per worker, kept between batches)."""

    until: int | None = None
    """The range from the checkpoint to this key holds a row the database refused; None when not searching."""
    saved_size: int | None = None
    """The batch size to come back to once the row is set aside."""

    def size_for(self, keys_left: int) -> int:
        """The next batch while searching: half the rows left in the refused range (one when one is left)."""
        return max(1, keys_left // 2)

    def refused(self, hi: int, keys: int, size: int) -> bool:
        """A batch ending at ``hi`` with ``keys`` rows was refused: search within it. False when it was one row,
        which is then the refused row itself."""
        if keys <= 1:
            return False
        if self.saved_size is None:
            self.saved_size = size
        self.until = hi
        return True

    def finish(self, size: int) -> int:
        """Stop searching (the row is set aside, or the range went through after all); the size to go on with."""
        restored = self.saved_size or size
        self.until, self.saved_size = None, None
        return restored
