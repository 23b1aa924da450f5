"""Who launched a run, as the ledger and alerts name it.

``cli:<user>@<host>`` and ``alembic:<user>@<host>`` for runs from a terminal, ``dagster:<run id>`` for Dagster runs.
Lives in the core because the schema layer (plain alembic runs), the engine and the orchestration all name their
launcher the same way.
"""

from __future__ import annotations

import getpass
import socket


def cli_user(tool: str = "cli") -> str:
    """Who launched a run outside Dagster: ``cli:<user>@<host>`` or ``alembic:<user>@<host>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without passwd entry)
        user = "unknown"
    return f"{tool}:{user}@{socket.gethostname()}"


def dagster_launcher(run_id: str) -> str:
    return f"dagster:{run_id}"
