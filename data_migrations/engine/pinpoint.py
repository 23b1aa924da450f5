"""Finding a refused row inside the batch it spoiled, from how far the refused statement got.

PostgreSQL counts the tuples a statement updated even when the statement fails: rolling back a savepoint adds the
subtransaction's counts to the transaction's own statistics (``pg_stat_get_xact_tuples_updated``). So when a
step's write is refused, the rows it updated before the refusal tell the refused row's position in the order the
statement walked them. The worker applies each batch's step under a savepoint; on a data error it rolls back to
it, reads the count, and tries the rows at that position one at a time under savepoints of their own: by key (an
index scan, or a pandas frame written back in key order), in the frame's order, and by physical position (a
sequential or bitmap heap scan). Both the row at the count and the one before it are candidates: a check
constraint refuses a row before it is counted, a unique index after. A candidate refused alone is the poison
row; the range is applied again around it, in the same transaction, and the row is set aside with the database's
reason. A refused COPY names its line, so a pandas step's refused value gives its row at once.

Cost per poison row: the refused attempt (on average half of what the batch had to do) and a few single-row
statements, against about three quarters of a batch and 2 x log2(batch size) committed transactions when halving.
Once a worker has met a refused row, where more are likely, it runs a SQL step's batches as ``REFUSAL_PIECES``
statements over parts of the range, each under its savepoint, so the next refusal wastes at most a part; before
that, a batch is one statement (pieces cost a few per cent when nothing is refused). The batch's row locks are
held for about twice a batch, not for a whole search. Savepoints that wrote stay in the transaction until it
commits, and past 64 of them every other session's snapshots get slower (PostgreSQL's per-backend subtransaction
cache overflows), so a batch sets aside at most ``MAX_PINPOINTED_PER_BATCH`` rows this way and halves beyond.

When no candidate is refused alone (a deferred constraint refuses only at commit, two rows of the batch clash
with each other, the statement writes a table other than the one walked, a trigger counts rows of its own), the
refusal goes up unchanged and the worker halves its batches around it (``isolation``). Nothing is guessed: a row
is set aside only after the database refused it alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from data_migrations.base import DataMigration, SqlStep
from data_migrations.engine.isolation import database_reason, is_data_error
from data_migrations.engine.steps import Applied, apply_step

REFUSAL_PIECES = 8  # statements a SQL step's batch runs as once its worker has met a refused row
# refused rows one batch sets aside in place (each leaves two written savepoints, the pieces one each: below the
# 64 a backend caches); past this, halving takes over
MAX_PINPOINTED_PER_BATCH = 24
CANDIDATE_SPREAD = 3  # rows either side of the counted position tried too (rows the app moved meanwhile)
# where the refused row may be, relative to the rows counted before the refusal, likeliest first
SHIFTS = (0, -1, 1, -2, 2, -3, 3)


def apply_isolating(conn: Connection, m: DataMigration, lo: int, hi: int, pieces: int = 1) -> Applied:
    """Run ``m``'s step over ``(lo, hi]`` in the batch's transaction, setting aside each row the database refuses.

    ``pieces``: run a SQL step as that many statements over equal parts of the range, each under its own
    savepoint, so a refusal wastes at most one part (a worker that has met a refused row asks for this; a pandas
    step always runs whole, its per-statement costs being larger). Raises the database's refusal when its row
    cannot be found this way, for the worker to halve around.
    """
    applied = Applied(0)
    todo = _parts(lo, hi, pieces if isinstance(m.step, SqlStep) else 1)
    start = tuples_updated(conn, m)
    before = start
    while todo:
        a, b = todo.pop()
        savepoint = conn.begin_nested()
        try:
            part = apply_step(conn, m, a, b)
        except DBAPIError as exc:
            if not is_data_error(exc):  # about the database, not the data: the worker's retries handle it
                raise
            savepoint.rollback()
            after = tuples_updated(conn, m)
            found = None
            if len(applied.refused) < MAX_PINPOINTED_PER_BATCH:
                found = _refused_alone(conn, m, a, b, _candidates(conn, m, a, b, after - before, exc))
            if found is None:
                # all the batch wrote is about to be rolled back: dead tuples the throttle counts as the run's
                exc.dead_tuples = tuples_updated(conn, m) - start
                raise
            applied.refused.append(found)
            now = tuples_updated(conn, m)
            applied.wasted += now - before  # the refused statement's writes and the candidates' tried alone
            todo += _parts(found[0], b, 1) + _parts(a, found[0] - 1, 1)
            before = now
            continue
        savepoint.commit()
        if isinstance(m.step, SqlStep) and m.step.rowcount_is_rows:
            before += part.written  # an UPDATE of the walked table: its rowcount is the tuples it updated
        else:
            before = tuples_updated(conn, m)
        applied.written += part.written
        applied.rejected += part.rejected
    return applied


def _parts(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    """``(lo, hi]`` in ``n`` parts of equal key span, the lowest last (``todo.pop()`` takes keys in order)."""
    bounds = sorted({lo + (hi - lo) * i // n for i in range(n + 1)})
    return [(a, b) for a, b in zip(bounds[-2::-1], bounds[:0:-1], strict=True) if b > a]


def tuples_updated(conn: Connection, m: DataMigration) -> int:
    """Tuples of ``m``'s table this transaction has updated so far, refused statements' included."""
    return int(
        conn.scalar(text("SELECT pg_stat_get_xact_tuples_updated(CAST(:t AS regclass))"), {"t": m.table})
    )


def _candidates(
    conn: Connection, m: DataMigration, lo: int, hi: int, done: int, exc: DBAPIError
) -> Iterator[int]:
    """Keys that may be the refused row, likeliest first.

    The row at position ``done`` (0-based) in each order the statement may have walked, then the one before it
    (counted when a unique index refused it), then a few either side: a row the app updated in the meantime moves
    in physical order, shifting the rows between its old and new place by one.
    """
    refused_key = getattr(exc, "refused_key", None)
    if refused_key is not None:
        yield refused_key
    written = getattr(exc, "written_keys", None)
    if written is not None:  # a pandas write-back: the rows it was given, in the frame's order, whole
        first = 0
        orders = [lambda: sorted(written), lambda: written, lambda: _by_position(conn, m, written)]
    else:  # each read from ``first`` on, and only when the likelier candidates before it went through alone
        first = max(done - CANDIDATE_SPREAD, 0)
        orders = [
            lambda order=order: _walked(conn, m, lo, hi, order, first) for order in (f"t.{m.key}", "t.ctid")
        ]
    lists: dict[int, list[int]] = {}
    for shift in SHIFTS:
        for n, read in enumerate(orders):
            if n not in lists:
                lists[n] = read()
            keys = lists[n]
            if 0 <= done + shift - first < len(keys):
                yield keys[done + shift - first]


def _walked(conn: Connection, m: DataMigration, lo: int, hi: int, order: str, first: int) -> list[int]:
    """The rows a SQL step updates in ``(lo, hi]`` (pending, not rejected by it) in ``order``, from ``first`` on,
    as many as the candidates need."""
    where = f"t.{m.key} > :lo AND t.{m.key} <= :hi AND ({m.pending_where})"
    if isinstance(m.step, SqlStep) and m.step.reject_sql:
        where += f" AND t.{m.key} NOT IN (SELECT r.key FROM ({m.step.reject_sql}) r)"
    return conn.scalars(
        text(f"SELECT t.{m.key} FROM {m.table} t WHERE {where} ORDER BY {order} OFFSET :first LIMIT :n"),
        {"lo": lo, "hi": hi, "first": first, "n": 2 * CANDIDATE_SPREAD + 1},
    ).all()


def _by_position(conn: Connection, m: DataMigration, keys: list[int]) -> list[int]:
    """``keys`` in physical order (a heap scan's)."""
    return conn.scalars(
        text(
            f"SELECT t.{m.key} FROM {m.table} t WHERE t.{m.key} = ANY(CAST(:keys AS bigint[])) ORDER BY t.ctid"
        ),
        {"keys": keys},
    ).all()


def _refused_alone(
    conn: Connection, m: DataMigration, lo: int, hi: int, candidates: Iterator[int]
) -> tuple[int, str] | None:
    """The first candidate in ``(lo, hi]`` the database refuses on its own, with the database's reason."""
    tried: set[int] = set()
    for key in candidates:
        key = int(key)
        if key in tried or not lo < key <= hi:
            continue
        tried.add(key)
        savepoint = conn.begin_nested()
        try:
            apply_step(conn, m, key - 1, key)
        except DBAPIError as exc:
            savepoint.rollback()
            if is_data_error(exc):
                return key, database_reason(exc)
            raise
        savepoint.rollback()  # it goes through alone: not this one (it is written with the rest of its range)
    return None
