"""Contract: drop alert_subscriptions.alert_types now that types are rows

Revision ID: 0016
Revises: 0015
Create Date: 2026-09-22 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from tradedb.guards import require_data_migrations, restore_quarantined_originals

ticket: str = "TRD-456"
data_impact: str = (
    "Drops alert_subscriptions.alert_types. Types live in alert_subscription_types; subscriptions naming unknown "
    "types keep their text in tradedb_migrations.quarantine."
)
rollback_notes: str = (
    "Downgrade re-creates alert_types as the sorted, comma-separated list of each subscription's type rows "
    "(original spacing and case are not restored); quarantined rows get their original text back."
)
requires_data: tuple[str, ...] = ("discord.split_alert_types",)
preserves_data: bool = False

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "ban-drop-column": (
        "Contract step: alert_types text was superseded by alert_subscription_types rows in 0012 (expand), "
        "and the guard above refuses while any subscription still needs discord.split_alert_types."
    ),
    "require-statement-timeout": (
        "DROP COLUMN is catalog-only; the guard's query runs before any lock is taken."
    ),
}

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    require_data_migrations(requires_data)
    op.drop_column("alert_subscriptions", "alert_types")


def downgrade() -> None:
    op.add_column("alert_subscriptions", sa.Column("alert_types", sa.Text(), nullable=True))
    op.execute(
        """UPDATE alert_subscriptions a SET alert_types = s.types
           FROM (SELECT subscription_id, string_agg(alert_type, ',' ORDER BY alert_type) AS types
                 FROM alert_subscription_types GROUP BY subscription_id) s
           WHERE s.subscription_id = a.id"""
    )
    restore_quarantined_originals("discord.split_alert_types", "alert_types")
