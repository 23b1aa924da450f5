"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}
# --- Documentation the tooling reads (tradedb status / lint / plan). Fill every field before review. ---
ticket: str = "TODO-000"  # the issue or ticket this change belongs to, e.g. "TRD-123"
data_impact: str = "TODO: which tables and rows change, and whether data is rewritten, locked or dropped"
rollback_notes: str = "TODO: what `alembic downgrade -1` does here and what, if anything, it cannot restore"
requires_data: tuple[str, ...] = ()  # data migrations that must be finished first, e.g. ("execution.backfill_x",)
preserves_data: bool = True  # False when upgrade+downgrade cannot give back the same rows (say why above)
# `tradedb lint` runs squawk on this revision's SQL and fails on every finding not listed here. Fix the SQL, or
# accept a rule with the reason it is safe in THIS revision, e.g.
# {"require-concurrent-index-creation": "the table is created empty earlier in this revision"}
lint_acknowledged: dict[str, str] = {}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
