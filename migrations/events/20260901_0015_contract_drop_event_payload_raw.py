"""Contract: drop events.payload_raw now that payloads are JSONB

Revision ID: 0015
Revises: 0014
Create Date: 2026-09-01 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from tradedb.guards import require_data_migrations, restore_quarantined_originals

ticket: str = "TRD-431"
data_impact: str = (
    "Drops events.payload_raw (the legacy text). Unparseable payloads keep their text in tradedb_migrations.quarantine "
    "and have a NULL payload."
)
rollback_notes: str = (
    "Downgrade re-creates payload_raw from payload as canonical JSON text, so whitespace and key spellings differ "
    "from the original; quarantined rows get their original text back from the quarantine."
)
requires_data: tuple[str, ...] = ("events.normalise_event_payload",)
preserves_data: bool = False

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "ban-drop-column": (
        "Contract step: payload_raw was superseded by JSONB payload in 0011 (expand), and the guard above "
        "refuses while any row still needs events.normalise_event_payload."
    ),
    "require-statement-timeout": (
        "DROP COLUMN is catalog-only; the guard's count runs on events before any lock is taken."
    ),
}

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
    restore_quarantined_originals("events.normalise_event_payload", "payload_raw")
    op.alter_column("events", "payload_raw", existing_type=sa.Text(), nullable=False)
