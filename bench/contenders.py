"""The contenders of the backfill benchmark, each a function ``(url, rows) -> dict`` run in its own process.

All of them fill ``trades.notional = round(price * quantity, 8)`` on the same seeded table:
- ``set_based``: one UPDATE statement, the lower bound on work (and the upper bound on lock impact);
- ``engine_sql``: the engine with the declared SQL step (``execution.backfill_trade_notional``);
- ``engine_pandas``: the engine with a pandas step (read batch, compute in pandas, COPY back, one UPDATE ... FROM);
- ``naive_loop``: what a user writes by hand: OFFSET pages read with pandas, written back row by row.
"""

from __future__ import annotations

import resource
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from data_migrations import engine as data_engine
from data_migrations import get
from data_migrations.base import DataMigration, PandasStep, TransformResult

NAIVE_PAGE = 10_000  # the page size a hand-written loop typically uses


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: reset at exec, unlike ru_maxrss, which a spawned child
    inherits from the parent that seeded a million rows)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tenth_ratio(seconds: list[float], rows: list[int]) -> float | None:
    """Time per row in the last tenth of batches over the first tenth (1.0 = no slowdown as the run goes on).

    Per row, because the engine's batches change size as it adapts; a loop over OFFSET pages slows per row.
    """
    pairs = [(s, r) for s, r in zip(seconds, rows, strict=True) if r > 0]
    if len(pairs) < 10:
        return None
    k = max(1, len(pairs) // 10)
    first = sum(s for s, _ in pairs[:k]) / sum(r for _, r in pairs[:k])
    last = sum(s for s, _ in pairs[-k:]) / sum(r for _, r in pairs[-k:])
    return round(last / first, 3) if first > 0 else None


def set_based(url: URL, rows: int) -> dict:
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("UPDATE trades SET notional = round(price * quantity, 8) WHERE notional IS NULL"))
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "batches": 1, "last_vs_first_tenth": None, "peak_rss_mb": peak_rss_mb()}


def _engine_result(result: data_engine.RunResult) -> dict:
    return {
        "seconds": result.seconds,
        "batches": result.batches,
        "retries": result.retries,
        "last_vs_first_tenth": tenth_ratio(result.batch_seconds, result.batch_rows),
        "peak_rss_mb": peak_rss_mb(),
    }


def engine_sql(url: URL, rows: int) -> dict:
    result = data_engine.run(url, "execution.backfill_trade_notional", data_engine.RunOptions(throttle=False))
    assert result.status == "finished", result.stop_reason
    return _engine_result(result)


def _notional(batch: pd.DataFrame) -> TransformResult:
    price = batch["price"].map(Decimal)
    quantity = batch["quantity"].map(Decimal)
    notional = [round(p * q, 8) for p, q in zip(price, quantity, strict=True)]
    return TransformResult(rows=pd.DataFrame({"id": batch["id"], "notional": notional}))


PANDAS_BACKFILL = DataMigration(
    name="execution.backfill_trade_notional",
    after="0008",
    table="trades",
    description="benchmark: the notional backfill as a pandas transform",
    pending_where="t.notional IS NULL",
    step=PandasStep(
        read_sql="SELECT id, price::text AS price, quantity::text AS quantity FROM trades "
        "WHERE id > :lo AND id <= :hi AND notional IS NULL",
        transform=_notional,
        result_columns={"id": "bigint", "notional": "numeric(24, 8)"},
        write_sql="UPDATE trades t SET notional = r.notional FROM batch_result r WHERE t.id = r.id",
    ),
)


def engine_pandas(url: URL, rows: int) -> dict:
    result = data_engine.run(url, PANDAS_BACKFILL, data_engine.RunOptions(throttle=False))
    assert result.status == "finished", result.stop_reason
    return _engine_result(result)


def naive_loop(url: URL, rows: int) -> dict:
    """OFFSET pages read with pandas, one UPDATE per row, one commit per page (as commonly written)."""
    engine = create_engine(url)
    page_times: list[float] = []
    page_rows: list[int] = []
    started = time.perf_counter()
    offset = 0
    with engine.connect() as conn:
        while True:
            t0 = time.perf_counter()
            page = pd.read_sql(
                text("SELECT id, price, quantity FROM trades ORDER BY id LIMIT :n OFFSET :o"),
                conn,
                params={"n": NAIVE_PAGE, "o": offset},
            )
            if page.empty:
                break
            for row in page.itertuples(index=False):
                conn.execute(
                    text("UPDATE trades SET notional = :v WHERE id = :id"),
                    {"v": round(Decimal(str(row.price)) * Decimal(str(row.quantity)), 8), "id": int(row.id)},
                )
            conn.commit()
            offset += NAIVE_PAGE
            page_times.append(time.perf_counter() - t0)
            page_rows.append(len(page))
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": seconds,
        "batches": len(page_times),
        "last_vs_first_tenth": tenth_ratio(page_times, page_rows),
        "peak_rss_mb": peak_rss_mb(),
    }


def events_workers(workers: int):
    """The CPU-heavy pandas migration (JSON parsing per row) with ``workers`` processes."""

    def contender(url: URL, rows: int) -> dict:
        options = data_engine.RunOptions(
            throttle=False, workers=workers, slice_keys=max(rows // (4 * workers), 1)
        )
        result = data_engine.run(url, get("events.normalise_event_payload").name, options)
        assert result.status == "finished", result.stop_reason
        return {"seconds": result.seconds, "rows": result.rows_done + result.rows_quarantined}

    return contender


CONTENDERS = {
    "set_based": set_based,
    "engine_sql": engine_sql,
    "engine_pandas": engine_pandas,
    "naive_loop": naive_loop,
}


def run_contender(name: str, url: URL, rows: int, workers: int, out) -> None:
    """Child-process entry point (importable, as the spawn start method needs)."""
    fn = events_workers(workers) if name == "events" else CONTENDERS[name]
    out.put(fn(url, rows))
