"""The contenders of the backfill benchmark, each a function ``(url, rows) -> dict`` run in its own process.

All of them fill ``trades.notional = round(price * quantity, 8)`` on the same seeded table:
- ``set_based``: one UPDATE statement, the lower bound on work (and the upper bound on lock impact);
- ``engine_sql``: the engine with the declared SQL step (``execution.backfill_trade_notional``), default options
  (``--workers auto``, throttling on, as a deploy runs it);
- ``engine_sql_serial`` / ``engine_sql_workers``: the same with one worker / with ``--workers 2``, to show what
  parallel slices buy;
- ``engine_sql_poison``: ``engine_sql`` with one trade in 100,000 whose product overflows ``numeric(24, 8)``, to
  show what isolating poison rows costs;
- ``engine_pandas``: the engine with a pandas step (read batch, exact vectorised arithmetic, COPY back, one
  UPDATE ... FROM);
- ``naive_loop``: what a user writes by hand: OFFSET pages read with pandas, written back row by row.
"""

from __future__ import annotations

import resource
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from data_migrations import engine as data_engine
from data_migrations import get
from data_migrations.base import DataMigration, PandasStep, TransformResult

NAIVE_PAGE = 10_000  # the page size a hand-written loop typically uses


def peak_rss_mb() -> float:
    """Peak resident memory of this process or of any worker process it ran, whichever is larger.

    This process's is VmHWM (reset at exec, unlike ru_maxrss, which a spawned child inherits from the parent that
    seeded a million rows); a pandas step's workers are processes of their own, whose peak is RUSAGE_CHILDREN's.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            own = int(line.split()[1]) / 1024.0
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)


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
        "workers": result.workers,
        "rows_quarantined": result.rows_quarantined,
        "throttled_seconds": round(result.throttled_seconds, 3),
        "outside_batch_seconds": round(result.outside_batch_seconds, 3),
        "last_vs_first_tenth": tenth_ratio(result.batch_seconds, result.batch_rows),
        "peak_rss_mb": peak_rss_mb(),
    }


def _engine(name, **options):
    """A contender running ``name`` (a registered name or a declaration) with ``options`` over the defaults."""

    def contender(url: URL, rows: int) -> dict:
        result = data_engine.run(url, name, data_engine.RunOptions(**options))
        assert result.status == "finished", result.stop_reason
        measured = _engine_result(result)
        if result.rows_quarantined:
            measured["refused_batches_extra_share"] = refused_batches_extra_share(url, result.name)
        return measured

    return contender


def refused_batches_extra_share(url: URL, name: str) -> float:
    """How much longer the batches that set rows aside took than their rows take at the run's own pace, as a share
    of all the run's batch time: the poison rows' cost seen from inside one run, which two runs' wall times (10-50 %
    apart on a shared machine) cannot resolve below a few per cent. It leaves out what is not in those batches (a
    worker's later batches in pieces, cheap when measured alone), so it is a floor, not the whole cost."""
    engine = create_engine(url)
    with engine.connect() as conn:
        batches = conn.execute(
            text(
                "SELECT rows + quarantined AS rows, quarantined, seconds "
                "FROM tradedb_migrations.data_migration_batches WHERE name = :n"
            ),
            {"n": name},
        ).all()
    engine.dispose()
    clean = [b for b in batches if not b.quarantined and b.rows]
    per_row = sum(b.seconds for b in clean) / max(sum(b.rows for b in clean), 1)
    extra = sum(b.seconds - b.rows * per_row for b in batches if b.quarantined)
    return round(extra / max(sum(b.seconds for b in batches), 1e-9), 4)


SCALE = 10**8  # numeric(*, 8): the value times 10^8 is a whole number


def _units(values: pd.Series) -> np.ndarray:
    """Exact scaled integers from numeric text with its eight decimals ("101.50000000" -> 10150000000).

    Python integers in an object array: numpy multiplies them element by element without ever rounding, at about
    the speed of float arithmetic, where ``decimal.Decimal`` per row costs ten times more.
    """
    return np.array([int(v) for v in values.str.replace(".", "", regex=False)], dtype=object)


def _decimal_text(units: np.ndarray) -> list[str]:
    """Scaled integers back to numeric text with eight decimals, for COPY."""
    return [f"{'-' if u < 0 else ''}{q}.{r:08d}" for u in units for q, r in (divmod(abs(u), SCALE),)]


def _notional(batch: pd.DataFrame) -> TransformResult:
    """``round(price * quantity, 8)`` exactly, vectorised: no float ever touches the money."""
    product = _units(batch["price"]) * _units(batch["quantity"])  # scaled by 10^16
    half = SCALE // 2  # PostgreSQL's round() takes halves away from zero
    magnitude = (np.abs(product) + half) // SCALE
    rounded = np.where(product < 0, -magnitude, magnitude)
    return TransformResult(rows=pd.DataFrame({"id": batch["id"], "notional": _decimal_text(rounded)}))


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
        write_sql="UPDATE trades t SET notional = r.notional FROM batch_result r "
        "WHERE t.id = r.id AND t.id > :lo AND t.id <= :hi",
    ),
)


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
        options = data_engine.RunOptions(workers=workers, slice_keys=max(rows // (4 * workers), 1))
        result = data_engine.run(url, get("events.normalise_event_payload").name, options)
        assert result.status == "finished", result.stop_reason
        return {
            "seconds": result.seconds,
            "rows": result.rows_done + result.rows_quarantined,
            "throttled_seconds": round(result.throttled_seconds, 3),
        }

    return contender


BACKFILL = "execution.backfill_trade_notional"
CONTENDERS = {
    "set_based": set_based,
    "engine_sql": _engine(BACKFILL),
    "engine_sql_serial": _engine(BACKFILL, workers=1),
    "engine_sql_workers": _engine(BACKFILL, workers=2),
    "engine_sql_poison": _engine(BACKFILL),
    "engine_pandas": _engine(PANDAS_BACKFILL),
    "naive_loop": naive_loop,
}


def run_contender(name: str, url: URL, rows: int, workers: int, out) -> None:
    """Child-process entry point (importable, as the spawn start method needs)."""
    fn = events_workers(workers) if name == "events" else CONTENDERS[name]
    out.put(fn(url, rows))
