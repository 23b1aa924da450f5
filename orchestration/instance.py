"""The persistent Dagster instance a CLI run and ``dagster dev`` share, and the CLI runs that died on it.

``DAGSTER_HOME`` (default: the git-ignored ``.dagster_home`` of the project) is created with our ``dagster.yaml``
on first use, so a CLI run is recorded where the UI shows it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

from tradedb.core.paths import project_root

DAGSTER_YAML = """\
# Dagster's own storage for local runs (SQLite in this folder). It is never the app database.
# Schema and data steps share the pool below, limited to one step at a time across runs.
concurrency:
  pools:
    default_limit: 1
# The daemon (dagster dev) fails runs whose process died and frees their pool slots.
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 0
telemetry:
  enabled: false
"""

PID_TAG = "tradedb/pid"
HOST_TAG = "tradedb/host"


def ensure_dagster_home() -> Path:
    """Use ``DAGSTER_HOME`` or the project's ``.dagster_home``, creating it with our ``dagster.yaml``."""
    home = Path(os.environ.get("DAGSTER_HOME") or project_root() / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


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
