"""Expand: alert_subscription_types table, split from alert_subscriptions.alert_types

Revision ID: 0012
Revises: 0011
Create Date: 2026-06-09 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

ticket: str = "TRD-455"
data_impact: str = (
    "Creates alert_subscription_types; discord.split_alert_types fills it from the comma-separated text."
)
rollback_notes: str = "Downgrade drops alert_subscription_types; alert_types text, its source, is untouched."
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "prefer-text-field": (
        "New, empty table; alert_type is bounded by its CHECK list and String(16) in the models, on purpose."
    ),
    "require-statement-timeout": "Creates an empty table: there is no scan to bound.",
}

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_subscription_types",
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("alert_type", sa.String(16), nullable=False),
        sa.CheckConstraint(
            "alert_type IN ('entry', 'stop', 'target', 'signal', 'bias', 'fill')",
            name=op.f("ck_alert_subscription_types_alert_type"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["alert_subscriptions.id"],
            name=op.f("fk_alert_subscription_types_subscription_id_alert_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", "alert_type", name=op.f("pk_alert_subscription_types")),
    )


def downgrade() -> None:
    op.drop_table("alert_subscription_types")
