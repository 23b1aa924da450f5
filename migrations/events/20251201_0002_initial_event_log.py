"""Initial schema for events: the append-only event log (payload as text)

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01 09:05:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from tradedb.lint import EMPTY_DATABASE_ACKNOWLEDGED

ticket: str = "TRD-101"
data_impact: str = "Creates events; no existing data. Payloads are stored as text as producers send them."
rollback_notes: str = "Downgrade drops the event log: only for an empty database."
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = EMPTY_DATABASE_ACKNOWLEDGED

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("payload_raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_type_occurred_at", "events", ["event_type", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_events_type_occurred_at", table_name="events")
    op.drop_table("events")
