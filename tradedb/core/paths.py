"""Where the project lives on disk, and where generated state goes.

Below everything else in the core, because the embedded server, the config file, the alert log and Dagster's home
all need these two answers and nothing more.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def project_root() -> Path:
    """Return the folder holding ``alembic.ini``: the checkout for an editable install, else the cwd."""
    if (PROJECT_ROOT / "alembic.ini").exists():
        return PROJECT_ROOT
    return Path.cwd()


def state_dir() -> Path:
    """Return the git-ignored folder for generated state (embedded database, Dagster home, reports)."""
    return Path(os.environ.get("TRADEDB_STATE_DIR", project_root() / ".tradedb"))
