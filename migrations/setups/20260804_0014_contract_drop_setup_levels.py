"""Contract: drop the legacy ticker_setups.levels text

Revision ID: 0014
Revises: 0013
Create Date: 2026-08-04 10:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from tradedb.guards import require_data_migrations, restore_quarantined_originals

ticket: str = "TRD-389"
data_impact: str = (
    "Drops ticker_setups.levels. Parsed values live in entry/stop/target_price; rows that could not be parsed keep "
    "their original text in tradedb_migrations.quarantine."
)
rollback_notes: str = (
    "Downgrade re-creates levels from the typed prices in canonical form 'entry=N;stop=N;target=N' (variant "
    "spellings come back normalised, so not byte for byte); quarantined rows get their original text back."
)
requires_data: tuple[str, ...] = ("setups.parse_ticker_setup_levels",)
preserves_data: bool = False

# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "ban-drop-column": (
        "Contract step: levels was superseded by typed prices in 0009 (expand), and the guard above refuses "
        "while any row still needs setups.parse_ticker_setup_levels; unparseable originals stay in "
        "quarantine."
    ),
    "require-statement-timeout": (
        "DROP COLUMN is catalog-only; the guard's count runs on ticker_setups before any lock is taken."
    ),
}

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    require_data_migrations(requires_data)
    op.drop_column("ticker_setups", "levels")


def downgrade() -> None:
    op.add_column("ticker_setups", sa.Column("levels", sa.Text(), nullable=True))
    op.execute(
        """UPDATE ticker_setups SET levels = NULLIF(concat_ws(';',
               'entry=' || trim_scale(entry_price)::text,
               'stop=' || trim_scale(stop_price)::text,
               'target=' || trim_scale(target_price)::text), '')"""
    )
    restore_quarantined_originals("setups.parse_ticker_setup_levels", "levels")
