"""A table full of values the database refuses, and the two step kinds that migrate it (no fixtures here).

Importable by a subprocess (the crash test runs the engine in one), so the declarations live at module level.
Each row's legacy text columns are cast into typed columns; a poison row carries one value PostgreSQL refuses,
with a known SQLSTATE. Good rows come out exactly the same whichever step migrates them.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from data_migrations.base import DataMigration, PandasStep, SqlStep, TransformResult

TABLE = "poison"
DDL = f"""
CREATE TABLE {TABLE} (
    id bigint PRIMARY KEY,
    raw_amount text, raw_doc text, raw_day text, divisor integer, code text,
    amount numeric(6, 2) CONSTRAINT amount_not_negative CHECK (amount >= 0),
    doc jsonb, day date, ratio numeric, code_u text CONSTRAINT code_unique UNIQUE,
    migrated boolean NOT NULL DEFAULT false
)"""
GOOD = {"raw_amount": "12.50", "raw_doc": '{"a": 1}', "raw_day": "2026-01-02", "divisor": 4}

# kind -> (column values that make the row poison, the SQLSTATE the database answers with)
POISON: dict[str, tuple[dict, str]] = {
    "json": ({"raw_doc": '{"px": NaN, "sym": "AAA"}'}, "22P02"),  # invalid input syntax for type json
    "overflow": ({"raw_amount": "12345678.9"}, "22003"),  # numeric field overflow (numeric(6, 2))
    "date": ({"raw_day": "2026-02-30"}, "22008"),  # date/time field value out of range
    "zero": ({"divisor": 0}, "22012"),  # division by zero
    "negative": ({"raw_amount": "-5"}, "23514"),  # check violation
    "duplicate": ({"code": "c1"}, "23505"),  # unique violation: row 1 already holds code c1
    "clash": ({"code": "clash"}, "23505"),  # unique violation between two rows of the same batch
}
NUL_MARKER = "<nul>"  # the pandas transform turns this into a NUL character, which COPY refuses (22021)

WRITE_COLUMNS = """amount = {src}raw_amount::numeric, doc = {src}raw_doc::jsonb, day = {src}raw_day::date,
    ratio = 100 / {src}divisor, code_u = {src}code, migrated = true"""


def create(url: URL, rows: int, poison_at: dict[int, str]) -> None:
    """Create and fill the table: ``rows`` good rows, except the ids in ``poison_at`` (id -> POISON kind or 'nul')."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(DDL))
        values = []
        for i in range(1, rows + 1):
            row = {**GOOD, "id": i, "code": f"c{i}"}
            kind = poison_at.get(i)
            if kind == "nul":
                row["code"] = f"c{i}{NUL_MARKER}"
            elif kind is not None:
                row.update(POISON[kind][0])
            values.append(row)
        conn.execute(
            text(
                f"INSERT INTO {TABLE} (id, raw_amount, raw_doc, raw_day, divisor, code) "
                "VALUES (:id, :raw_amount, :raw_doc, :raw_day, :divisor, :code)"
            ),
            values,
        )
    engine.dispose()


SQL_POISON = DataMigration(
    name="common.poison_sql",
    after="0001",
    table=TABLE,
    description="test: cast legacy text columns with set-based SQL",
    pending_where="NOT t.migrated",
    step=SqlStep(
        update_sql=f"UPDATE {TABLE} SET {WRITE_COLUMNS.format(src='')} WHERE id > :lo AND id <= :hi AND NOT migrated",
    ),
    revert_sql=f"""UPDATE {TABLE} SET amount = NULL, doc = NULL, day = NULL, ratio = NULL, code_u = NULL,
        migrated = false WHERE id > :lo AND id <= :hi""",
)


def passthrough(batch: pd.DataFrame) -> TransformResult:
    """Hand the legacy values on as they are (the write-back casts them), with the NUL marker made real."""
    out = batch.copy()
    out["code"] = out["code"].str.replace(NUL_MARKER, "\x00", regex=False)
    return TransformResult(rows=out)


PANDAS_POISON = DataMigration(
    name="common.poison_pandas",
    after="0001",
    table=TABLE,
    description="test: cast legacy text columns in a pandas write-back",
    pending_where="NOT t.migrated",
    step=PandasStep(
        read_sql=f"SELECT id, raw_amount, raw_doc, raw_day, divisor, code FROM {TABLE} "
        "WHERE id > :lo AND id <= :hi AND NOT migrated ORDER BY id",
        transform=passthrough,
        result_columns={
            "id": "bigint",
            "raw_amount": "text",
            "raw_doc": "text",
            "raw_day": "text",
            "divisor": "integer",
            "code": "text",
        },
        write_sql=f"UPDATE {TABLE} p SET {WRITE_COLUMNS.format(src='r.')} FROM batch_result r WHERE p.id = r.id",
    ),
)

MIGRATIONS = {"sql": SQL_POISON, "pandas": PANDAS_POISON}
