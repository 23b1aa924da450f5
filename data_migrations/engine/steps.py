"""Applying a declared step to one key range ``(lo, hi]`` inside a batch's transaction.

A SQL step runs its ``reject_sql`` (rows it declares it cannot transform) and its ``update_sql``; a pandas step reads
the range, transforms it, COPYs the result into a temporary table and runs its set-based ``write_sql``. What comes
back is counted and quarantined by the worker, in the same transaction. A write the database refuses raises, carrying
what the search for the refused row can use (``pinpoint``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import pandas as pd
import psycopg2
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from data_migrations.base import DataMigration, PandasStep, SqlStep

TEMP_TABLE = "batch_result"  # where a pandas step's rows wait for its write_sql (dropped at commit)
COPY_LINE = re.compile(rf"^COPY {TEMP_TABLE}, line (\d+)")


@dataclass
class Applied:
    """What one step did to a range: rows written, rows it rejected itself, rows the database refused (found by
    ``pinpoint`` or by narrowing the batches down to them), and what refused statements wrote in vain."""

    written: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    wasted: int = 0
    """Rows refused statements had written before the database refused them, and candidates that went through
    when tried alone: rolled back, but dead tuples all the same, which the throttle counts as the run's own."""

    @property
    def set_aside(self) -> list[tuple[int, str]]:
        """Every row to quarantine, each with its reason."""
        return self.rejected + self.refused


def apply_step(conn: Connection, m: DataMigration, lo: int, hi: int) -> Applied:
    """Run ``m``'s step over ``(lo, hi]`` on ``conn`` (the batch's transaction)."""
    if isinstance(m.step, SqlStep):
        return _apply_sql(conn, m, m.step, lo, hi)
    return _apply_pandas(conn, m, m.step, lo, hi)


def _apply_sql(conn: Connection, m: DataMigration, step: SqlStep, lo: int, hi: int) -> Applied:
    rejected = []
    if step.reject_sql:
        rejected = [(r.key, r.reason) for r in conn.execute(text(step.reject_sql), {"lo": lo, "hi": hi})]
    written = conn.execute(text(step.update_sql), {"lo": lo, "hi": hi}).rowcount
    return Applied(written, rejected)


def _apply_pandas(conn: Connection, m: DataMigration, step: PandasStep, lo: int, hi: int) -> Applied:
    # not pd.read_sql: it wraps driver errors in pandas' DatabaseError, hiding a dropped connection from the retry
    result = conn.execute(text(step.read_sql), {"lo": lo, "hi": hi})
    # plain tuples: pandas builds a frame from SQLAlchemy's Row objects fifteen times slower (5 us a row)
    batch = pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))
    out = step.transform(batch)
    rejected = list(zip(out.rejected["key"], out.rejected["reason"], strict=True))
    if len(out.rows):
        try:
            copy_into_temp(conn, out.rows, step.result_columns)
            conn.execute(text(step.write_sql), {"lo": lo, "hi": hi})
        except DBAPIError as exc:
            # what the poison-row search needs to find a refused row (``pinpoint``): the keys written, in order,
            # and the one whose line a refused COPY names
            keys = [int(k) for k in out.rows[m.key]] if m.key in out.rows else None
            exc.written_keys = keys
            line = getattr(exc, "copy_line", None)
            if keys is not None and line is not None and 0 < line <= len(keys):
                exc.refused_key = keys[line - 1]
            raise
    return Applied(len(out.rows), rejected)


def copy_into_temp(conn: Connection, frame: pd.DataFrame, columns: dict[str, str]) -> None:
    """COPY a batch's result into the temporary ``batch_result`` (emptied first), for one set-based write-back.

    Driver errors of the COPY are raised as SQLAlchemy's, like every other statement's, so the retry and the
    poison-row isolation see them.
    """
    cols = ", ".join(f"{name} {sqltype}" for name, sqltype in columns.items())
    conn.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS {TEMP_TABLE} ({cols}) ON COMMIT DROP"))
    buffer = io.StringIO()
    frame[list(columns)].to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    copy = f"COPY {TEMP_TABLE} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(f"TRUNCATE {TEMP_TABLE}")
        cursor.copy_expert(copy, buffer)
        # without statistics the planner guesses the temp table's size and may join it by scanning the whole
        # target table once per batch; ANALYZE of a few thousand rows costs milliseconds and keeps the join on
        # the key index
        cursor.execute(f"ANALYZE {TEMP_TABLE}")
    except psycopg2.Error as exc:
        error = DBAPIError.instance(copy, None, exc, psycopg2.Error)
        error.copy_line = copy_line(exc)
        raise error from exc


def copy_line(exc: psycopg2.Error) -> int | None:
    """The line of the COPY's input the database refused (``COPY batch_result, line 3, column x: ...``), if named."""
    match = COPY_LINE.search(getattr(getattr(exc, "diag", None), "context", None) or "")
    return int(match.group(1)) if match else None
