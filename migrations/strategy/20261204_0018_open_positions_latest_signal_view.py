"""Strategy view of open positions with their latest signal

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 06:11:12.798817+00:00
"""

from collections.abc import Sequence

from alembic import op
from alembic_utils.pg_view import PGView

ticket: str = "TRD-481"
data_impact: str = (
    "Creates the view open_positions_latest_signal over positions, instruments and signals. No table changes and "
    "no data rewritten; CREATE VIEW takes no lock that blocks the app's reads or writes of those tables."
)
rollback_notes: str = (
    "Downgrade drops the view; nothing is lost (a view stores no rows). Until it is re-created, readers of the "
    "view get an error. A later revision that alters a column the view reads must drop and re-create the view."
)
requires_data: tuple[str, ...] = ()
preserves_data: bool = True
# squawk findings accepted here, each with why (`tradedb lint` fails on any finding not listed)
lint_acknowledged: dict[str, str] = {
    "require-statement-timeout": (
        "CREATE VIEW only writes the catalog: it reads no rows, so nothing can run long; the wait for its lock is "
        "bounded by the lock_timeout every schema step sets."
    ),
}

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The definition as of this revision (tradedb/core/objects/strategy/open_positions_latest_signal.sql then): a later
# change to that file is a new revision replacing the view, never an edit here.
OPEN_POSITIONS_LATEST_SIGNAL = PGView(
    schema="public",
    signature="open_positions_latest_signal",
    definition="SELECT\n    p.id AS position_id,\n    p.account_id,\n    p.instrument_id,\n    i.symbol,\n    p.quantity,\n    p.avg_price,\n    p.updated_at AS position_updated_at,\n    s.id AS signal_id,\n    s.direction AS signal_direction,\n    s.strength AS signal_strength,\n    s.generated_at AS signal_generated_at\nFROM public.positions p\nJOIN public.instruments i ON i.id = p.instrument_id\nLEFT JOIN LATERAL (\n    SELECT sig.id, sig.direction, sig.strength, sig.generated_at\n    FROM public.signals sig\n    WHERE sig.instrument_id = p.instrument_id\n    ORDER BY sig.generated_at DESC, sig.id DESC\n    LIMIT 1\n) s ON true\nWHERE p.quantity <> 0",
)


def upgrade() -> None:
    op.create_entity(OPEN_POSITIONS_LATEST_SIGNAL)


def downgrade() -> None:
    op.drop_entity(OPEN_POSITIONS_LATEST_SIGNAL)
