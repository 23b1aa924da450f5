"""Expand: JSONB events.payload and events.instrument_id, normalised from payload_raw

Revision ID: 0011
Revises: 0010
Create Date: 2026-05-19 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

ticket: str = "TRD-430"
data_impact: str = "Adds nullable events.payload (jsonb) and events.instrument_id with FK and index; events.normalise_event_payload fills them."
rollback_notes: str = "Downgrade drops payload and instrument_id; payload_raw, their source, is untouched."
requires_data: tuple[str, ...] = ()
preserves_data: bool = True

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("payload", postgresql.JSONB(), nullable=True))
    op.add_column("events", sa.Column("instrument_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_events_instrument_id_instruments"), "events", "instruments", ["instrument_id"], ["id"]
    )
    op.create_index(op.f("ix_events_instrument_id"), "events", ["instrument_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_events_instrument_id"), table_name="events")
    op.drop_constraint(op.f("fk_events_instrument_id_instruments"), "events", type_="foreignkey")
    op.drop_column("events", "instrument_id")
    op.drop_column("events", "payload")
