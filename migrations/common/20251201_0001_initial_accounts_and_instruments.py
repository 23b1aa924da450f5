"""Initial schema for common: trading accounts and instruments

Revision ID: 0001
Revises:
Create Date: 2025-12-01 09:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

ticket: str = "TRD-100"
data_impact: str = "Creates accounts and instruments; no existing data."
rollback_notes: str = "Downgrade drops both tables and everything in them: only for an empty database."
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "prefer-identity": (
        "Release 1.0 schema, applied everywhere: BIGSERIAL keys match the models; moving to IDENTITY would be "
        "a revision of its own, not an edit of shipped history."
    ),
    "prefer-text-field": (
        "New, empty tables, so no lock on existing rows; the varchar bounds are the models' String(n) limits, "
        "kept on purpose (raising one later is catalog-only, no rewrite)."
    ),
}

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("broker", sa.String(64), nullable=False),
        sa.Column("base_currency", sa.String(3), server_default=sa.text("'USD'"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("base_currency ~ '^[A-Z]{3}$'", name=op.f("ck_accounts_base_currency_iso")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "instruments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("exchange", sa.String(16), nullable=False),
        sa.Column("asset_class", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tick_size", sa.Numeric(18, 8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "asset_class IN ('equity', 'future', 'option', 'crypto', 'fx')",
            name=op.f("ck_instruments_asset_class"),
        ),
        sa.CheckConstraint("tick_size > 0", name=op.f("ck_instruments_tick_size_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruments")),
        sa.UniqueConstraint("symbol", name=op.f("uq_instruments_symbol")),
    )


def downgrade() -> None:
    op.drop_table("instruments")
    op.drop_table("accounts")
