"""Lint of data-migration declarations: the documentation standards revisions meet, and no scaffold left unfinished.

A data migration documents itself in its module docstring (its ``description``): a first line that says what it
does, and a ticket such as ``TRD-123`` somewhere in it. ``tradedb data new`` writes placeholders for both, and marks
every part the author must write with ``TODO(scaffold)``; each marker left in the file is a finding, so a scaffold
cannot reach CI unfinished. None of these can be acknowledged: the fix is always to write the missing part.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import data_migrations
from data_migrations.base import DataMigration
from tradedb.core.paths import project_root
from tradedb.ops.lint import (
    DOC_DESCRIPTION,
    DOC_TICKET,
    Finding,
    RevisionLint,
    description_problem,
    real_tickets,
)
from tradedb.ops.scaffold.templates import MARKER

SCAFFOLD_RULE = "scaffold-placeholder"
"""A ``TODO(scaffold)`` marker is still in the declaration's file."""


def lint_data_migration(m: DataMigration) -> RevisionLint:
    """Documentation and scaffold findings of one data migration (``revision`` holds its name)."""
    path = data_migrations.source_file(m.name)
    findings = [Finding(DOC_DESCRIPTION, problem)] if (problem := description_problem(m.description)) else []
    if not real_tickets(m.description or ""):
        findings.append(
            Finding(DOC_TICKET, "the docstring names no ticket: add the issue it belongs to, e.g. TRD-123")
        )
    lines = [i for i, line in enumerate(path.read_text().splitlines(), start=1) if MARKER in line]
    findings += [Finding(SCAFFOLD_RULE, f"{MARKER} still to fill in", line=i) for i in lines]
    return RevisionLint(revision=m.name, feature=m.feature, path=_relative(path), findings=tuple(findings))


def lint_data_migrations(names: Iterable[str] | None = None) -> list[RevisionLint]:
    """Every data migration in registry order, or only ``names``."""
    chosen = (
        list(data_migrations.registry()) if names is None else [data_migrations.get(n).name for n in names]
    )
    return [lint_data_migration(data_migrations.get(name)) for name in chosen]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)
