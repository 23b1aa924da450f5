"""Initial schema for events: the append-only event log (payload as text)

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01 09:05:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

ticket: str = "TRD-101"
data_impact: str = "Creates events; no existing data. Payloads are stored as text as producers send them."
rollback_notes: str = "Downgrade drops the event log: only for an empty database."
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
    "require-statement-timeout": (
        "Release 1.0 initial schema on an empty database: events, created in this same transaction, has no "
        "rows, so nothing is slow to bound."
    ),
}

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
