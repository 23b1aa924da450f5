"""Expand: typed entry/stop/target prices on ticker_setups, parsed from the levels text

Revision ID: 0009
Revises: 0008
Create Date: 2026-03-02 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

ticket: str = "TRD-388"
data_impact: str = "Adds three nullable numeric columns to ticker_setups (no rewrite); setups.parse_ticker_setup_levels fills them."
rollback_notes: str = "Downgrade drops the typed columns; the levels text they came from is still there."
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "require-statement-timeout": (
        "Catalog-only statements (no scan, no rewrite): nothing slow to bound once the lock is granted."
    ),
}

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ticker_setups", sa.Column("entry_price", sa.Numeric(20, 8), nullable=True))
    op.add_column("ticker_setups", sa.Column("stop_price", sa.Numeric(20, 8), nullable=True))
    op.add_column("ticker_setups", sa.Column("target_price", sa.Numeric(20, 8), nullable=True))


def downgrade() -> None:
    op.drop_column("ticker_setups", "target_price")
    op.drop_column("ticker_setups", "stop_price")
    op.drop_column("ticker_setups", "entry_price")
