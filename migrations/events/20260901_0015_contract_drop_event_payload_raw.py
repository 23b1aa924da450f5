"""Contract: drop events.payload_raw now that payloads are JSONB

Revision ID: 0015
Revises: 0014
Create Date: 2026-09-01 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from tradedb.guards import require_data_migrations

ticket: str = "TRD-431"
data_impact: str = (
    "Drops events.payload_raw (the legacy text). Unparseable payloads keep their text in tradedb_migrations.quarantine "
    "and have a NULL payload."
)
rollback_notes: str = (
    "Downgrade re-creates payload_raw from payload as canonical JSON text ('{}' where payload is NULL; the original "
    "text of quarantined rows is in quarantine), so whitespace and key spellings differ from the original."
)
requires_data: tuple[str, ...] = ("events.normalise_event_payload",)
preserves_data: bool = False

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    require_data_migrations(requires_data)
    op.drop_column("events", "payload_raw")


def downgrade() -> None:
    op.add_column("events", sa.Column("payload_raw", sa.Text(), nullable=True))
    op.execute("UPDATE events SET payload_raw = coalesce(payload::text, '{}')")
    op.alter_column("events", "payload_raw", existing_type=sa.Text(), nullable=False)
