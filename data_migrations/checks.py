"""Integrity checks after data migrations: invariants, quarantine reconciliation, foreign-key orphans.

Each check returns a ``CheckResult`` with a sample of offending rows, so the CLI and Dagster asset checks show
what is wrong, not just that something is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Connection, text

from data_migrations import registry
from data_migrations.base import DataMigration
from data_migrations.engine import check_schema_position
from tradedb.core.errors import TradeDBError
from tradedb.schema.pending_rows import count_pending
from tradedb.schema.state_schema import STATE_SCHEMA as S
from tradedb.schema.state_schema import has_state_table

SAMPLE_ROWS = 5


@dataclass
class CheckResult:
    name: str
    passed: bool
    description: str
    violations: int = 0
    sample: list[dict] = field(default_factory=list)
    skipped: str | None = None


def _plain(value):
    return float(value) if isinstance(value, Decimal) else str(value)


def _sample(conn: Connection, sql: str) -> tuple[int, list[dict]]:
    count = conn.scalar(text(f"SELECT count(*) FROM ({sql}) v"))
    rows = [dict(r) for r in conn.execute(text(f"SELECT * FROM ({sql}) v LIMIT {SAMPLE_ROWS}")).mappings()]
    return int(count), json.loads(json.dumps(rows, default=_plain))  # numbers stay numbers, the rest text


def invariant_results(conn: Connection, m: DataMigration) -> list[CheckResult]:
    """Evaluate ``m``'s invariants where they apply (legacy ones only before the contract revision)."""
    try:
        position = check_schema_position(conn, m)
    except TradeDBError as exc:
        return [CheckResult(f"{m.name}:{i.name}", True, i.name, skipped=str(exc)) for i in m.invariants]
    out = []
    for inv in m.invariants:
        if inv.legacy and position == "contracted":
            out.append(
                CheckResult(
                    f"{m.name}:{inv.name}", True, inv.name, skipped="legacy columns already contracted"
                )
            )
            continue
        count, sample = _sample(conn, _without_quarantined(conn, m, inv.violations_sql))
        out.append(CheckResult(f"{m.name}:{inv.name}", count == 0, inv.name, count, sample))
    return out


def _without_quarantined(conn: Connection, m: DataMigration, violations_sql: str) -> str:
    """``violations_sql`` minus the rows ``m`` quarantined: they never got its transformation, by design, and
    ``quarantine_reconciled`` accounts for them (an invariant selects the migration's key column for this)."""
    if not has_state_table(conn, "quarantine"):
        return violations_sql
    return (
        f"SELECT v.* FROM ({violations_sql}) v WHERE NOT EXISTS (SELECT 1 FROM {S}.quarantine q "
        f"WHERE q.migration = '{m.name}' AND q.row_key = v.{m.key})"
    )


def completeness(conn: Connection, m: DataMigration) -> CheckResult:
    """Rows still needing ``m`` (quarantined rows excluded): 0 once it has finished."""
    try:
        if check_schema_position(conn, m) == "contracted":
            return CheckResult(f"{m.name}:complete", True, "no rows left unmigrated", skipped="contracted")
    except TradeDBError as exc:
        return CheckResult(f"{m.name}:complete", True, "no rows left unmigrated", skipped=str(exc))
    left = count_pending(conn, m)
    return CheckResult(
        f"{m.name}:complete", left == 0, "no rows left unmigrated (done + quarantined = source)", left
    )


def quarantine_reconciled(conn: Connection, m: DataMigration) -> CheckResult:
    """Every quarantined row still exists and carries a reason; the count matches the run's tally."""
    if not has_state_table(conn, "quarantine"):
        return CheckResult(f"{m.name}:quarantine", True, "quarantine reconciled", skipped="no state yet")
    sql = f"""SELECT q.row_key, q.reason FROM {S}.quarantine q
              WHERE q.migration = '{m.name}' AND (coalesce(q.reason, '') = '' OR q.row_data IS NULL
                    OR NOT EXISTS (SELECT 1 FROM {m.table} t WHERE t.{m.key} = q.row_key))"""
    count, sample = _sample(conn, sql)
    total = conn.scalar(text(f"SELECT count(*) FROM {S}.quarantine WHERE migration = :n"), {"n": m.name})
    tally = conn.scalar(
        text(f"SELECT rows_quarantined FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name}
    )
    mismatch = tally is not None and tally != total
    result = CheckResult(
        f"{m.name}:quarantine",
        count == 0 and not mismatch,
        f"{total} quarantined row(s), each with a reason and its original row",
        count,
        sample,
    )
    if mismatch:
        result.sample.append({"recorded_quarantined": tally, "rows_in_quarantine": total})
    return result


FK_ORPHANS_SQL = """
SELECT c.conname, c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent,
       a.attname AS child_col, pa.attname AS parent_col
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype = 'f' AND n.nspname = 'public' AND array_length(c.conkey, 1) = 1
"""


def foreign_key_orphans(conn: Connection) -> CheckResult:
    """Rows whose foreign key points at nothing (possible after NOT VALID constraints or manual fixes)."""
    orphans, sample = 0, []
    for fk in conn.execute(text(FK_ORPHANS_SQL)):
        sql = (
            f'SELECT c."{fk.child_col}" AS value FROM {fk.child} c WHERE c."{fk.child_col}" IS NOT NULL '
            f'AND NOT EXISTS (SELECT 1 FROM {fk.parent} p WHERE p."{fk.parent_col}" = c."{fk.child_col}")'
        )
        count, rows = _sample(conn, sql)
        if count:
            orphans += count
            sample.extend({"constraint": fk.conname, **r} for r in rows)
    return CheckResult(
        "foreign_key_orphans",
        orphans == 0,
        "every foreign key points at an existing row",
        orphans,
        sample[:SAMPLE_ROWS],
    )


def data_checks(conn: Connection, m: DataMigration) -> list[CheckResult]:
    """All checks of one data migration."""
    return [completeness(conn, m), quarantine_reconciled(conn, m), *invariant_results(conn, m)]


def all_checks(conn: Connection) -> list[CheckResult]:
    results = [foreign_key_orphans(conn)]
    for m in registry().values():
        results.extend(data_checks(conn, m))
    return results
