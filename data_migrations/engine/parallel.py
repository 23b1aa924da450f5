"""Several workers on one migration, claiming slices with ``FOR UPDATE SKIP LOCKED``: threads or processes.

A SQL step's work happens in the database, so threads are enough: each worker waits on its own connection, and
two connections on two cores beat one statement. A pandas step transforms in Python, where threads would queue on
the interpreter lock, so each worker gets a process of its own (spawned, not forked: it builds its own engine, so
no connection crosses a process). Either way the parent reports progress from the state row, over one rate
window, and a worker that fails stops its siblings at their next batch boundary.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from data_migrations.base import DataMigration, PandasStep
from data_migrations.engine.lock import APPLICATION_PREFIX
from data_migrations.engine.options import RunOptions, RunResult
from data_migrations.engine.progress import Progress, RateWindow
from data_migrations.engine.worker import Worker
from tradedb.core.errors import TradeDBError
from tradedb.schema.state_schema import STATE_SCHEMA

S = STATE_SCHEMA
PROGRESS_SECONDS = 0.5  # how often the parent reports progress while workers run
DRAIN_SECONDS = 0.05  # how often the parent empties the worker processes' queue (a full one keeps them alive)
WAIT_NOTE_SECONDS = 2.0  # a worker's throttle note shows in the progress line this long after it was made


def run_workers(
    engine: Engine, m: DataMigration, options: RunOptions, result: RunResult, n: int
) -> tuple | None:
    """Run ``n`` workers on ``m`` (threads for SQL steps, processes for pandas steps); the first stop wins."""
    if isinstance(m.step, PandasStep):
        return _run_processes(engine, m, options, result, n)
    return _run_threads(engine, m, options, result, n)


def _run_threads(
    engine: Engine, m: DataMigration, options: RunOptions, result: RunResult, n: int
) -> tuple | None:
    stop = threading.Event()
    outcomes: list[tuple | None] = [None] * n
    errors: list[BaseException] = []
    waits: dict[int, tuple[str, float, float]] = {}  # worker -> (reason, held, noted at)
    quiet = dataclasses.replace(options, on_progress=None)

    def work(i: int) -> None:
        def note(reason: str, held: float) -> None:
            waits[i] = (reason, held, time.monotonic())

        worker = Worker(engine, m, quiet, _worker_id(i), stop=stop, on_wait=note)
        try:
            outcomes[i] = worker.run(result)
        except BaseException as exc:  # raised again in the parent once every sibling has stopped
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=work, args=(i,), name=f"{m.name} worker {i}", daemon=True) for i in range(n)
    ]
    for t in threads:
        t.start()

    def finished(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    _report_while(finished, engine, m, options, waits)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return next((o for o in outcomes if o), None)


def _run_processes(
    engine: Engine, m: DataMigration, options: RunOptions, result: RunResult, n: int
) -> tuple | None:
    ctx = multiprocessing.get_context("spawn")
    outcomes = ctx.Queue()
    child_options = dataclasses.replace(options, on_progress=None, workers=1)
    procs = [
        ctx.Process(target=_worker_main, args=(engine.url, m, child_options, i, outcomes), daemon=True)
        for i in range(n)
    ]
    for p in procs:
        p.start()
    results: list = []

    def drain() -> None:
        """Take what workers sent. A child exits only once what it put is in the pipe, so after the last one has
        exited nothing more can come and nothing sent is still on its way."""
        while True:
            try:
                results.append(outcomes.get_nowait())
            except queue.Empty:
                return

    def finished(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            drain()
            alive = [p.sentinel for p in procs if p.is_alive()]
            left = deadline - time.monotonic()
            if not alive or left <= 0:
                return not alive
            multiprocessing.connection.wait(alive, min(left, DRAIN_SECONDS))

    _report_while(finished, engine, m, options, {})
    for p in procs:
        p.join()
    drain()
    for batches in (r for r in results if isinstance(r, list)):
        for seconds, rows in batches:
            result.add_batch(seconds, rows, 1)
    failures = [r for r in results if isinstance(r, tuple) and r[0] in ("failed", "interrupted", "cancelled")]
    if any(p.exitcode for p in procs) and not failures:
        failures = [("failed", "a worker process died")]
    return failures[0] if failures else None


def _worker_main(url: URL, m: DataMigration, options: RunOptions, index: int, outcomes) -> None:
    """Entry point of one worker process: its own engine, its batches' timings and its outcome back by queue."""
    engine = create_engine(
        url, pool_pre_ping=True, connect_args={"application_name": f"{APPLICATION_PREFIX}:{index}"}
    )
    try:
        mine = RunResult(m.name, "running")
        outcome = Worker(engine, m, options, _worker_id(index)).run(mine)
        outcomes.put(list(zip(mine.batch_seconds, mine.batch_rows, strict=True)))
        outcomes.put(outcome)
    except TradeDBError as exc:
        outcomes.put(("failed", str(exc)))
    finally:
        engine.dispose()


def _worker_id(index: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


def _report_while(
    finished: Callable[[float], bool], engine: Engine, m: DataMigration, options: RunOptions, waits: dict
) -> None:
    """Report progress from the state row every ``PROGRESS_SECONDS`` until ``finished(timeout)`` says the workers
    are done; it returns as soon as they are, so the run ends with its last batch, not up to a period later."""
    rate = RateWindow()
    while not finished(PROGRESS_SECONDS):
        if options.on_progress:
            recent = [w for w in waits.values() if time.monotonic() - w[2] < WAIT_NOTE_SECONDS]
            options.on_progress(_progress_from_state(engine, m, rate, recent[0] if recent else None))


def _progress_from_state(
    engine: Engine, m: DataMigration, rate: RateWindow, wait: tuple[str, float, float] | None
) -> Progress:
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
        throttled=wait[0] if wait else None,
        throttled_for=wait[1] if wait else 0.0,
        throttled_seconds=row["throttled_seconds"],
    )
