"""A copy of the repository to run scaffolds and walkthroughs in, so no test ever writes into the checkout.

The copy holds the files a commit of the working tree would hold (tracked, plus untracked ones git does not
ignore), made a git repository of its own with one commit, as a fresh clone is. Commands run in it as a user with
that checkout installed in editable mode would run them: ``PYTHONPATH`` names the copy, so ``tradedb``,
``alembic`` and ``python`` import the copy's ``tradedb``, ``data_migrations`` and ``orchestration`` (the venv's
editable finder only answers for packages nothing on the path provides) and ``tradedb.core.paths.project_root``
is the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import BIN, ROOT, cli_env
from tradedb.core.settings import Environment

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "tradedb tests",
    "GIT_AUTHOR_EMAIL": "tests@tradedb.invalid",
    "GIT_COMMITTER_NAME": "tradedb tests",
    "GIT_COMMITTER_EMAIL": "tests@tradedb.invalid",
}


def git(folder: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **GIT_IDENTITY},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def copy_repository(dest: Path) -> Path:
    """Copy the repository's files into ``dest`` and commit them there; return ``dest``."""
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "copy of the repository")
    return dest


def run_in(
    copy: Path,
    *args: str,
    tool: str = "tradedb",
    env: Environment | None = None,
    extra: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``tradedb``/``alembic``/``python``/... in ``copy`` against ``env`` as its dev environment."""
    executable = str(BIN / tool) if (BIN / tool).exists() else tool
    return subprocess.run(
        [executable, *args],
        cwd=copy,
        env=cli_env(env, PYTHONPATH=str(copy), **(extra or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
