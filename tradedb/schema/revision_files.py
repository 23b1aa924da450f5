"""Writing new revision files: which feature folder they go in and what the template is told to fill in.

``alembic.ini`` sets ``revision_environment = true``, so ``env.py`` runs for every ``alembic revision`` (not only
``--autogenerate``) and for ``alembic merge``: that is what lets ``-x feature=<f>`` place a plain revision, and
``-x requires_data=<name>`` write a contract revision's guard. Those commands only write a file, so ``env.py``
runs them offline (``writes_file_only``) and never needs a database.

The same values come from ``-x`` on the command line or from ``config.attributes`` (``tradedb new revision``);
``template_args`` turns them into the variables ``migrations/script.py.mako`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config

from tradedb.core.errors import TradeDBError
from tradedb.core.features import FEATURES
from tradedb.core.paths import project_root

WRITING_ATTRIBUTE = "writing_revision_file"
"""``config.attributes`` key our own callers set: True when the command only writes a file (no autogenerate)."""
DOCUMENTATION_FIELDS = ("ticket", "data_impact", "rollback_notes")
"""Template fields that may be given up front (``-x ticket=TRD-123`` or ``tradedb new revision --ticket``)."""
FILE_ONLY_COMMANDS = ("merge",)
"""Alembic commands that run ``env.py`` (with ``revision_environment``) only to write a file."""


def writes_file_only(config: Config) -> bool:
    """True when this Alembic command only writes a revision file: plain ``revision`` and ``merge``.

    ``autogenerate`` compares with a database and so is not file-only. Our own callers say so in
    ``config.attributes``; the ``alembic`` command line says it through its parsed options.
    """
    if WRITING_ATTRIBUTE in config.attributes:
        return bool(config.attributes[WRITING_ATTRIBUTE])
    cmd = getattr(config.cmd_opts, "cmd", None)
    name = getattr(cmd[0], "__name__", "") if cmd else ""
    if name == "revision":
        return not getattr(config.cmd_opts, "autogenerate", False)
    return name in FILE_ONLY_COMMANDS


def check_feature(feature: str) -> str:
    if feature not in FEATURES:
        raise TradeDBError(f"unknown feature {feature!r}: choose one of {', '.join(FEATURES)}")
    return feature


def feature_folder(feature: str, migrations: Path | None = None) -> Path:
    """``migrations/<feature>``, the version location of that feature's revisions."""
    return (migrations or project_root() / "migrations") / check_feature(feature)


def place_new_revision(feature: str | None):
    """Return a ``process_revision_directives`` hook putting a new revision in ``migrations/<feature>/``."""

    def hook(context, revision, directives) -> None:
        if not feature or not directives:
            return
        script = getattr(context, "script", None)
        folder = feature_folder(feature, Path(script.dir) if script is not None else None)
        directives[0].version_path = str(folder)

    if feature:
        check_feature(feature)  # one FAILED line before anything runs, whatever the command
    return hook


def template_args(attributes: dict[str, Any], x_args: dict[str, str]) -> dict[str, Any]:
    """What ``script.py.mako`` fills in beyond Alembic's own variables, from our callers or ``-x``.

    ``requires_data`` (a tuple; ``-x requires_data=a,b``) makes the template import the guard and call it first in
    ``upgrade()``; ``ticket``, ``data_impact`` and ``rollback_notes`` replace the placeholders ``tradedb lint``
    rejects. Anything not given keeps the template's placeholder.
    """
    args: dict[str, Any] = {}
    requires = attributes.get("requires_data")
    if requires is None and x_args.get("requires_data"):
        requires = [name.strip() for name in x_args["requires_data"].split(",") if name.strip()]
    if requires:
        args["requires_data"] = tuple(requires)
    for name in DOCUMENTATION_FIELDS:
        value = attributes.get(name) or x_args.get(name)
        if value:
            args[name] = str(value)
    return args
