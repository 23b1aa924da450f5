<%!
    import json
%><%
    requires = tuple(context.get("requires_data", ()) or ())
    literal = json.dumps  # a JSON string is a valid Python string literal, in the double quotes ruff prefers
%>"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
% if imports:
${imports}
% endif
% if requires:
from tradedb.schema.guards import require_data_migrations
% endif

# --- Documentation the tooling reads (tradedb status / lint / plan). Fill every field before review. ---
ticket: str = ${literal(context.get("ticket") or "TODO-000")}  # the issue or ticket this change belongs to, e.g. "TRD-123"
data_impact: str = ${literal(context.get("data_impact") or "TODO: which tables and rows change, and whether data is rewritten, locked or dropped")}
rollback_notes: str = ${literal(context.get("rollback_notes") or "TODO: what `alembic downgrade -1` does here and what, if anything, it cannot restore")}
% if requires:
# a contract revision: upgrade() refuses while any of these still has rows pending (tradedb data run NAME)
requires_data: tuple[str, ...] = (${", ".join(literal(name) for name in requires)},)
% else:
requires_data: tuple[str, ...] = ()  # data migrations that must be finished first, e.g. ("execution.backfill_x",)
% endif
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
% if requires:
    require_data_migrations(requires_data)
% endif
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
