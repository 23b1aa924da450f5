"""Add instruments.is_active and an index on exchange for the screener

Revision ID: 0007
Revises: 0006
Create Date: 2026-01-12 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

ticket: str = "TRD-131"
data_impact: str = "Adds instruments.is_active with a constant default (metadata-only in PG 11+, no rewrite); builds one index."
rollback_notes: str = "Downgrade drops the column and index; the is_active flags set since are lost (recomputable from listings)."
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "require-concurrent-index-creation": (
        "instruments is a small reference table of tradable symbols (200 in the sample data): the plain index "
        "builds in milliseconds, and a plain build is transactional with the column, unlike CONCURRENTLY."
    ),
    "require-statement-timeout": (
        "The column is catalog-only and the index covers a small reference table: nothing slow to bound."
    ),
}

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "instruments", sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False)
    )
    op.create_index(op.f("ix_instruments_exchange"), "instruments", ["exchange"])


def downgrade() -> None:
    op.drop_index(op.f("ix_instruments_exchange"), table_name="instruments")
    op.drop_column("instruments", "is_active")
