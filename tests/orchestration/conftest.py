"""Production Dagster for the orchestration tests: an instance stored in its own PostgreSQL database.

The storage database is created on the test server beside the app's databases, never one of them, and its
``dagster.yaml`` is written by ``tradedb dagster-config --postgres`` (``write_postgres_config``), as an operator
would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from orchestration.instance import write_postgres_config


@dataclass
class PostgresHome:
    """A ``DAGSTER_HOME`` whose dagster.yaml keeps runs, events and ticks in ``url``."""

    home: Path
    url: URL

    def instance(self) -> dg.DagsterInstance:
        """The instance as the daemon and the CLI see it, read straight from the file."""
        return dg.DagsterInstance.from_config(str(self.home))

    def scalar(self, sql: str, **params):
        """One value from Dagster's own tables (runs, event_logs, job_ticks) in the storage database."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.scalar(text(sql), params)
        finally:
            engine.dispose()


@pytest.fixture
def postgres_home(make_database, tmp_path, monkeypatch) -> Iterator[PostgresHome]:
    """``DAGSTER_HOME`` in a temp folder with Dagster's storage in a fresh database of the test server."""
    storage = make_database("dagster")
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    written = write_postgres_config(storage.url.render_as_string(hide_password=False))
    assert written.path == home / "dagster.yaml"
    yield PostgresHome(home, storage.url)
