"""Expand: add trades.notional (nullable) for reporting; backfilled by a data migration

Revision ID: 0008
Revises: 0007
Create Date: 2026-02-03 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

ticket: str = "TRD-412"
data_impact: str = "Adds nullable trades.notional (no rewrite). Existing rows stay NULL until execution.backfill_trade_notional runs."
rollback_notes: str = (
    "Downgrade drops trades.notional; it is derived from price x quantity, so nothing is lost."
)
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "require-statement-timeout": (
        "Catalog-only statements (no scan, no rewrite): nothing slow to bound once the lock is granted."
    ),
}

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trades", sa.Column("notional", sa.Numeric(24, 8), nullable=True))


def downgrade() -> None:
    op.drop_column("trades", "notional")
