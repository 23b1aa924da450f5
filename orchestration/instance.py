"""The persistent Dagster instance a CLI run and ``dagster dev`` share, and the CLI runs that died on it.

``DAGSTER_HOME`` (default: the git-ignored ``.dagster_home`` of the project) is created with our ``dagster.yaml``
on first use, so a CLI run is recorded where the UI shows it. Every CLI path to the instance comes through
``ensure_dagster_home`` and ``open_instance``, so a ``dagster.yaml`` that cannot load is one error line naming the
file (``dagster_yaml`` says what is checked), never a traceback from inside Dagster.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from orchestration.dagster_yaml import (
    LOCAL_YAML,
    PASSWORD_ENV,
    Storage,
    check,
    load_error,
    postgres_yaml,
    refuse_app_database,
    require_reachable,
    storage_url,
)
from tradedb.core.errors import TradeDBError
from tradedb.core.paths import project_root

DAGSTER_YAML = LOCAL_YAML  # written into a new DAGSTER_HOME

PID_TAG = "tradedb/pid"
HOST_TAG = "tradedb/host"


def dagster_home() -> Path:
    """``DAGSTER_HOME``, or the project's ``.dagster_home`` (not created here)."""
    return Path(os.environ.get("DAGSTER_HOME") or project_root() / ".dagster_home")


def ensure_dagster_home() -> Path:
    """Use ``DAGSTER_HOME`` or the project's ``.dagster_home``, creating it with our ``dagster.yaml``; check the file.

    A ``dagster.yaml`` Dagster could not load (malformed, a PostgreSQL storage without the psycopg2 driver, an unset
    variable, an unreachable storage database, a bad setting) is a ``TradeDBError`` naming the file, raised here,
    before a command prints or starts anything.
    """
    with open_instance():
        return dagster_home()


@contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The persistent instance, its file checked first; Dagster's own failure to load it is one ``TradeDBError``."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    check(home / "dagster.yaml")
    try:
        instance = dg.DagsterInstance.get()
    except Exception as exc:
        raise load_error(home / "dagster.yaml", exc) from None
    with instance:
        yield instance


@dataclass(frozen=True)
class WrittenConfig:
    """What ``write_postgres_config`` wrote: where, the storage, and the variable holding its password (if any)."""

    path: Path
    storage: Storage
    password_env: str | None
    replaced: bool


def write_postgres_config(
    raw_url: str, *, password_env: str = PASSWORD_ENV, force: bool = False
) -> WrittenConfig:
    """Write ``$DAGSTER_HOME/dagster.yaml`` with Dagster's storage in the PostgreSQL database ``raw_url``.

    The file keeps our pools and run monitoring; a password in the URL is written as ``{env: password_env}``,
    never in clear. Nothing is written unless Dagster loads the new file (which also creates its tables there),
    and an existing, different file is replaced only with ``force``.
    """
    url = storage_url(raw_url, "--postgres URL")
    home = dagster_home()
    path = home / "dagster.yaml"
    content = postgres_yaml(url, password_env)
    exists = path.exists()
    if exists and not force and path.read_text() != content:
        raise TradeDBError(f"{path} already exists ({check_quietly(path)}); --force replaces it")
    storage = Storage("storage.postgres", url)
    refuse_app_database("--postgres URL", storage)
    with (
        tempfile.TemporaryDirectory(prefix="dagster-config-") as scratch,
        _password_in(password_env, url.password),
    ):
        require_reachable("--postgres URL", storage)
        (Path(scratch) / "dagster.yaml").write_text(content)
        try:
            dg.DagsterInstance.from_config(scratch).dispose()
        except Exception as exc:
            raise load_error(path, exc) from None
    home.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")
    staged.write_text(content)
    os.replace(staged, path)
    return WrittenConfig(path, storage, password_env if url.password else None, exists)


def check_quietly(path: Path) -> str:
    """Where ``path`` keeps Dagster's runs, or why it cannot be read, as a phrase (for messages)."""
    try:
        return f"storage: {check(path).describe()}"
    except TradeDBError as exc:
        return f"unusable: {exc}"


@contextmanager
def _password_in(variable: str, password: str | None) -> Iterator[None]:
    """Let the trial load read the password from ``variable`` as the written file will, then put it back."""
    if password is None:
        yield
        return
    before = os.environ.get(variable)
    os.environ[variable] = password
    try:
        yield
    finally:
        if before is None:
            del os.environ[variable]
        else:
            os.environ[variable] = before


def reclaim_dead_cli_runs(instance) -> list[str]:
    """Fail CLI runs of this host whose process is gone and free their pool slots.

    A run killed mid-step (SIGKILL, a lost terminal) keeps its slot in the size-1 pool forever, and the next run
    would wait for it without end. Runs launched from the UI are the daemon's job (``run_monitoring``).
    """
    reclaimed = []
    running = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    for run in instance.get_runs(running):
        if run.tags.get(HOST_TAG) != socket.gethostname() or not run.tags.get(PID_TAG, "").isdigit():
            continue
        if _alive(int(run.tags[PID_TAG])):
            continue
        instance.report_run_failed(run, "the process running it died; checkpoints are kept for the next run")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reclaimed.append(run.run_id)
    return reclaimed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
