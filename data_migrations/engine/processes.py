"""Worker processes: several runners on one migration, claiming slices with ``FOR UPDATE SKIP LOCKED``.

Spawned, not forked: each builds its own engine and reads the registry itself, so no connection crosses a process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import socket
import time

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from data_migrations import get
from data_migrations.base import DataMigration
from data_migrations.engine.lock import APPLICATION_PREFIX
from data_migrations.engine.options import RunOptions, RunResult
from data_migrations.engine.progress import Progress, RateWindow
from data_migrations.engine.worker import Worker
from tradedb.core.errors import TradeDBError
from tradedb.schema.state_schema import STATE_SCHEMA

S = STATE_SCHEMA


def run_worker_processes(
    engine: Engine, m: DataMigration, options: RunOptions, result: RunResult
) -> tuple | None:
    """Run ``options.workers`` worker processes on the same migration; the parent reports progress."""
    ctx = multiprocessing.get_context("spawn")
    outcomes = ctx.Queue()
    url = engine.url
    child_options = dataclasses.replace(options, on_progress=None, workers=1)
    procs = [
        ctx.Process(target=_worker_main, args=(url, m.name, child_options, i, outcomes), daemon=True)
        for i in range(options.workers)
    ]
    for p in procs:
        p.start()
    rate = RateWindow()
    while any(p.is_alive() for p in procs):
        time.sleep(0.5)
        if options.on_progress:
            options.on_progress(_progress_from_state(engine, m, rate))
    for p in procs:
        p.join()
    results = []
    for _ in procs:
        try:
            results.append(outcomes.get(timeout=5))
        except queue.Empty:
            break
    failures = [r for r in results if r and r[0] in ("failed", "interrupted", "cancelled")]
    if any(p.exitcode for p in procs) and not failures:
        failures = [("failed", "a worker process died")]
    return failures[0] if failures else None


def _worker_main(url: URL, name: str, options: RunOptions, index: int, outcomes) -> None:
    """Entry point of one worker process (spawned: it builds its own engine and reads the registry itself)."""
    engine = create_engine(
        url, pool_pre_ping=True, connect_args={"application_name": f"{APPLICATION_PREFIX}:{index}"}
    )
    try:
        worker = Worker(engine, get(name), options, worker_id=f"{socket.gethostname()}:{os.getpid()}:{index}")
        outcomes.put(worker.run(RunResult(name, "running")))
    except TradeDBError as exc:
        outcomes.put(("failed", str(exc)))
    finally:
        engine.dispose()


def _progress_from_state(engine: Engine, m: DataMigration, rate: RateWindow) -> Progress:
    with engine.connect() as conn:
        row = (
            conn.execute(text(f"SELECT * FROM {S}.data_migration_state WHERE name = :n"), {"n": m.name})
            .mappings()
            .one()
        )
    done = row["rows_done"] + row["rows_quarantined"]
    return Progress(
        m.name,
        done,
        row["source_rows"],
        rate.add(done),
        row["batch_size"] or 0,
        row["batches"],
        row["retries"],
        throttled_seconds=row["throttled_seconds"],
    )
