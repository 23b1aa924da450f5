"""Poison rows: when the database refuses a batch because of one row's values, find that row and set it aside.

A batch's write can fail on data no one predicted (invalid JSON text, a product that overflows its numeric
column, a date out of range, a check or unique violation caused by the row itself). Such a failure is about the
data, not the database: retrying the same batch fails the same way forever, and one row would block the
migration, the contract revisions behind it and the maintenance window. So the batch's keys are bisected: each
half is written again under its own savepoint, halves that fail are split again, down to single rows, and a row
that still fails alone is quarantined with the database's SQLSTATE and message. Every other row of the batch is
migrated. A batch with one poison row costs about 2 x log2(batch size) extra small statements, not a replay row
by row.

Only SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation) are isolated. Everything else (a
lock or statement timeout, a serialization failure, a dropped connection, a missing table) is about the database,
and keeps the engine's retry-then-fail behaviour. The savepoints live inside the batch's transaction, so a crash
during a bisection loses the whole batch and the next run simply does it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection
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
class Isolated:
    """What a bisected write did: rows it wrote, rows the database refused (key, reason), statements it ran."""

    written: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    statements: int = 0


WriteRange = Callable[[int, int], int]
"""Write the keys ``keys[a:b]`` (``a``, ``b`` are indexes into the sorted keys) and return the rows written."""


def write_isolating(
    conn: Connection, whole: Callable[[], int], keys_of: Callable[[], Sequence[int]], write: WriteRange
) -> Isolated:
    """Write the batch with ``whole()``; on a data error, bisect its keys through ``write`` down to single rows.

    ``keys_of()`` is asked only after a failure (it costs a read): the sorted keys the batch covers. Each attempt
    runs under a savepoint of ``conn``'s transaction, so a failed half leaves no trace and a successful one stays
    part of the batch. A data error on a range holding no key (nothing left to blame) is raised as it is, like any
    error that is not about the data.
    """
    out = Isolated(statements=1)
    try:
        with conn.begin_nested():
            out.written = whole()
        return out
    except DBAPIError as exc:
        if not is_data_error(exc):
            raise
        keys = keys_of()
        if not keys:
            raise
        first_refusal = exc

    def attempt(a: int, b: int, known: DBAPIError | None = None) -> None:
        """Write ``keys[a:b]``; ``known`` is the refusal this range already got (a single key needs no retry)."""
        if known is not None and b - a == 1:
            out.refused.append((keys[a], database_reason(known)))
            return
        if known is not None:
            middle = (a + b) // 2
            attempt(a, middle)
            attempt(middle, b)
            return
        out.statements += 1
        try:
            with conn.begin_nested():
                out.written += write(a, b)
        except DBAPIError as exc:
            if not is_data_error(exc):
                raise
            attempt(a, b, exc)

    attempt(0, len(keys), first_refusal)
    return out
