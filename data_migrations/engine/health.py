"""Database health while a data migration runs: what the engine observes, and what each signal means for the run.

Like GitLab's batched migrations, the engine backs off on health signals, but it paces and shrinks the work rather
than stopping for routine maintenance, and it stops for the one vacuum that matters. ``decide`` is the rule, a pure
function of one observation:

- an anti-wraparound vacuum on the table: wait until it is done (it must finish, and our writes would make it
  longer);
- another session has waited ``LOCK_WAIT_SECONDS`` for a lock on the table: back off, the app's writes come first;
- an ordinary vacuum (autovacuum or someone's VACUUM) on the table: go on with smaller batches;
- dead tuples past ``DEAD_TUPLE_RATIO`` of the live rows (and past ``MIN_DEAD_TUPLES``): when this run's own
  updates explain them (every UPDATE leaves one), vacuum the table ourselves (``action = "vacuum"``: a plain,
  non-blocking VACUUM on a connection of its own) instead of waiting for autovacuum's schedule, which can be
  minutes, or hours on a big table, or never when autovacuum is off; dead tuples that were there before the run, or
  that grow faster than the run explains, still make it wait.

Every wait is bounded by the run's ``max_pause_seconds`` (``throttle.Throttle``), so a window's deadline is spent
on work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text

DEAD_TUPLE_RATIO = 0.5  # dead rows per live row on the table before the engine does something about them
MIN_DEAD_TUPLES = 50_000  # below this the ratio does not matter
OWN_DEAD_SLACK = 1.2  # dead tuples up to this many times what the run itself left still count as its own
LOCK_WAIT_SECONDS = 1.0  # another session waiting this long for a lock on the table means we back off
WRAPAROUND_MARK = "to prevent wraparound"  # how autovacuum names an anti-wraparound vacuum in its query text
VACUUM_APPLICATION = "tradedb-data-vacuum"  # application_name of the engine's own VACUUM connection
ENGINE_APPLICATIONS = (
    "tradedb-data%"  # every engine connection (batches, workers, vacuum): never a reason to wait
)


@dataclass(frozen=True)
class VacuumActivity:
    """A vacuum running on the table, as ``pg_stat_activity`` shows it.

    ``freeze_due``: the table is older than ``autovacuum_freeze_max_age``, so whatever vacuum runs on it is the
    anti-wraparound one even when the role may not read other sessions' query text.
    """

    pid: int
    query: str
    ours: bool = False
    freeze_due: bool = False

    @property
    def wraparound(self) -> bool:
        return WRAPAROUND_MARK in (self.query or "") or self.freeze_due


@dataclass(frozen=True)
class Health:
    """One observation of the table: dead and live tuples, vacuums running on it, the longest foreign lock wait."""

    table: str
    dead: int = 0
    live: int = 0
    vacuums: tuple[VacuumActivity, ...] = ()
    lock_wait: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """When dead tuples count as too many (the constants above, overridable per run)."""

    dead_tuple_ratio: float = DEAD_TUPLE_RATIO
    min_dead_tuples: int = MIN_DEAD_TUPLES

    def over(self, dead: float, live: int) -> bool:
        return dead > self.min_dead_tuples and dead > self.dead_tuple_ratio * max(live, 1)


@dataclass(frozen=True)
class Decision:
    """What the run does now: ``go`` on, ``shrink`` its batches, ``vacuum`` the table itself, or ``wait``."""

    action: Literal["go", "shrink", "vacuum", "wait"]
    reason: str | None = None


GO = Decision("go")


def decide(health: Health, own_dead: int, thresholds: Thresholds = Thresholds()) -> Decision:
    """The rule in the module docstring: ``own_dead`` is how many dead tuples this run has left since it last vacuumed."""
    t = health.table
    for v in health.vacuums:
        if v.wraparound and not v.ours:
            return Decision(
                "wait", f"anti-wraparound vacuum running on {t} (pid {v.pid}): pausing until it is done"
            )
    if health.lock_wait:
        return Decision("wait", health.lock_wait)
    others = [v for v in health.vacuums if not v.ours]
    if others:
        return Decision("shrink", f"vacuum running on {t} (pid {others[0].pid}): smaller batches meanwhile")
    if not thresholds.over(health.dead, health.live):
        return GO
    if any(v.ours for v in health.vacuums):
        return GO  # our own vacuum is already on it
    foreign = health.dead - own_dead * OWN_DEAD_SLACK
    if thresholds.over(foreign, health.live):
        return Decision(
            "wait",
            f"{health.dead} dead tuples on {t} (live {health.live}), {int(foreign)} more than this run left; "
            "waiting for vacuum",
        )
    return Decision(
        "vacuum", f"{health.dead} dead tuples on {t} (live {health.live}) left by this run: vacuuming"
    )


def observe(conn: Connection, table: str) -> Health:
    """Read the table's health from the statistics views (cheap: three small catalog queries)."""
    row = conn.execute(
        text("SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relid = to_regclass(:t)"),
        {"t": table},
    ).first()
    vacuums = tuple(
        VacuumActivity(r.pid, r.query or "", r.application_name == VACUUM_APPLICATION, r.freeze_due)
        for r in conn.execute(
            text(
                """SELECT p.pid, a.query, a.application_name,
                          age(c.relfrozenxid) > current_setting('autovacuum_freeze_max_age')::bigint AS freeze_due
                   FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a ON a.pid = p.pid
                   JOIN pg_class c ON c.oid = p.relid WHERE p.relid = to_regclass(:t)"""
            ),
            {"t": table},
        )
    )
    return Health(
        table, row.n_dead_tup if row else 0, row.n_live_tup if row else 0, vacuums, lock_wait(conn, table)
    )


def lock_wait(conn: Connection, table: str) -> str | None:
    """Another session (not ours) has waited on a lock while touching the table (row locks wait on a transaction
    id, not on the relation, so look for waiting sessions that hold any lock on the table)."""
    row = conn.execute(
        text(
            """SELECT a.pid, extract(epoch FROM now() - a.query_start) AS waited
               FROM pg_stat_activity a
               WHERE a.wait_event_type = 'Lock' AND a.application_name NOT LIKE :ours
                 AND now() - a.query_start > make_interval(secs => :s)
                 AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = to_regclass(:t))
               ORDER BY waited DESC LIMIT 1"""
        ),
        {"t": table, "s": LOCK_WAIT_SECONDS, "ours": ENGINE_APPLICATIONS},
    ).first()
    return f"session {row.pid} has waited {row.waited:.1f}s for a lock on {table}" if row else None


def may_vacuum(conn: Connection, table: str) -> bool:
    """Whether the connected role may VACUUM ``table`` (its owner, the database's owner, or a superuser).

    PostgreSQL only warns and skips when another role asks, so the engine asks first and paces instead.
    """
    return bool(
        conn.scalar(
            text(
                """SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE')
                          OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                   FROM pg_class c, pg_database d
                   WHERE c.oid = to_regclass(:t) AND d.datname = current_database()"""
            ),
            {"t": table},
        )
    )


def throttle_reasons(conn: Connection, table: str, own_dead: int = 0) -> list[str]:
    """Every reason to hold back right now (empty when the database is healthy): for operators and tests."""
    decision = decide(observe(conn, table), own_dead)
    return [decision.reason] if decision.reason else []
