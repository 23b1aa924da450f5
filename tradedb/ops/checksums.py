"""Table checksums: the proof that a round trip, a restore or a rehearsal kept every row.

A table's checksum is the md5 over its rows in primary-key order, each row rendered with its columns sorted by
name, so a column dropped and re-added at the end of the table (as downgrades do) checksums the same.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from tradedb.core.db import app_tables


def table_checksum(conn: Connection, table: str) -> str:
    columns = list(
        conn.scalars(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = :t "
                "ORDER BY column_name"
            ),
            {"t": table},
        )
    )
    keys = (
        list(
            conn.scalars(
                text(
                    """SELECT a.attname FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                   WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary ORDER BY a.attname"""
                ),
                {"t": f"public.{table}"},
            )
        )
        or columns
    )
    row = ", ".join(f't."{c}"' for c in columns)
    order = ", ".join(f't."{k}"' for k in keys)
    sql = f"SELECT coalesce(md5(string_agg(md5(ROW({row})::text), '' ORDER BY {order})), 'empty') FROM public.\"{table}\" t"
    return conn.scalar(text(sql))


def database_checksums(conn: Connection, tables: list[str] | None = None) -> dict[str, str]:
    """Checksum of every app table (or of ``tables``), by name."""
    return {t: table_checksum(conn, t) for t in (tables if tables is not None else app_tables(conn))}


def differing(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Tables whose checksum changed, appeared or disappeared."""
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
