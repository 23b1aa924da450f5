"""The embedded PostgreSQL server (the ``pgserver`` wheel), so a fresh machine needs nothing but this package.

The server is started on first use with ``cleanup_mode=None`` so it keeps running after the process exits and
the next CLI call, test or Dagster run reuses it; its data lives in the git-ignored state folder. It hosts one
database per environment, created on demand.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from tradedb.core.errors import TradeDBError
from tradedb.core.paths import state_dir
from tradedb.core.urls import DRIVER


def server_uri(data_dir: Path) -> str:
    """Start (or reuse) the embedded server whose data lives in ``data_dir`` and return its libpq URI."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(data_dir, cleanup_mode=None)
    except Exception as exc:  # pgserver raises bare subprocess/assertion errors; make them one clear line
        raise TradeDBError(f"could not start the embedded PostgreSQL in {data_dir}: {exc}") from exc
    return server.get_uri()


def ensure_database(admin_url: URL, database: str) -> None:
    """Create ``database`` on the server behind ``admin_url`` unless it exists (CREATE DATABASE needs autocommit)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database})
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    finally:
        engine.dispose()


def embedded_url(database: str) -> URL:
    """Return the psycopg2 URL of ``database`` on the embedded server, starting it and creating the database."""

    admin = make_url(server_uri(state_dir() / "pgdata")).set(drivername=DRIVER)
    ensure_database(admin, database)
    return admin.set(database=database)


def stop_server(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` (fast shutdown); False when none was running."""
    import signal
    import time

    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return True
