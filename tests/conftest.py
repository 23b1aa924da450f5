"""Shared fixtures: a real PostgreSQL server and a fresh database per test.

The server is the embedded one (``pgserver``) in a temporary folder by default, or the one named by
``TRADEDB_TEST_URL`` (any database on it; tests create and drop their own databases there). pytest-alembic's
built-in tests bind to this file and use ``alembic_engine`` below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

from tradedb.core.settings import Environment
from tradedb.core.urls import DRIVER

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


SIDE_EFFECT_PATHS = (
    "TRADEDB_ALERT_LOG",
    "TRADEDB_BACKUP_DIR",
    "TRADEDB_REPORTS_DIR",
)  # tests' alerts, backups, charts


@pytest.fixture(autouse=True)
def _private_side_effects(tmp_path, monkeypatch) -> None:
    """Alerts, backups and charts of a test go to its own temp folder (never the repo's), also for CLI subprocesses."""
    monkeypatch.setenv("TRADEDB_ALERT_LOG", str(tmp_path / "alerts.log"))
    monkeypatch.setenv("TRADEDB_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("TRADEDB_REPORTS_DIR", str(tmp_path / "reports"))


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """Admin URL (database ``postgres``) of the PostgreSQL server the tests use."""
    if os.environ.get("TRADEDB_TEST_URL"):
        yield make_url(os.environ["TRADEDB_TEST_URL"]).set(drivername=DRIVER, database="postgres")
        return
    from tradedb.core.embedded import server_uri, stop_server

    # Not under pytest's basetemp: a second pytest run on the machine rotates old basetemps away, and
    # PostgreSQL shuts down within a minute once its data directory's lock file is gone.
    home = Path(tempfile.mkdtemp(prefix="tradedb-test-pg-"))
    data_dir = home / "data"
    try:
        yield make_url(server_uri(data_dir)).set(drivername=DRIVER, database="postgres")
    finally:
        stop_server(data_dir)
        shutil.rmtree(home, ignore_errors=True)


def _admin(server_url: URL):
    return create_engine(server_url, isolation_level="AUTOCOMMIT")


@pytest.fixture
def make_database(server_url) -> Iterator:
    """Factory for fresh, empty databases on the test server; all are dropped at the end of the test."""
    created: list[str] = []
    admin = _admin(server_url)

    def make(environment: str = "dev") -> Environment:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        return Environment(environment, server_url.set(database=name), embedded=False)

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def env(make_database) -> Environment:
    """A fresh empty database, as the ``dev`` environment."""
    return make_database("dev")


@pytest.fixture
def alembic_engine(env):
    engine = create_engine(env.url)
    yield engine
    engine.dispose()


@pytest.fixture
def alembic_config() -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["skip_logging_config"] = True
    return cfg


def cli_env(env: Environment | None = None, **extra: str) -> dict[str, str]:
    """Process environment for a CLI subprocess aimed at ``env`` as the dev environment."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("TRADEDB_") or k in SIDE_EFFECT_PATHS}
    if env is not None:
        out[f"TRADEDB_{env.name.upper()}_URL"] = env.url.render_as_string(hide_password=False)
        out["TRADEDB_ENV"] = env.name
    out.update(extra)
    return out


def run_cli(
    *args: str,
    env: Environment | None = None,
    extra: dict[str, str] | None = None,
    tool: str = "tradedb",
    timeout: float = 180,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess:
    """Run ``tradedb`` or ``alembic`` from the repo root (or ``cwd``) as an operator would."""
    return subprocess.run(
        [str(BIN / tool), *args],
        cwd=cwd,
        env=cli_env(env, **(extra or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
