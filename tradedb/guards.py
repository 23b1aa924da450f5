"""The import path applied revision files use for the contract guard; the guard itself is ``tradedb.schema.guards``.

Revision files that production has already run must never change (the ledger keeps each file's sha256, and an
edited applied revision fails ``tradedb check`` and alerts), and they import ``tradedb.guards``. So this path stays,
as a re-export at the schema layer. New revisions import ``tradedb.schema.guards``.
"""

from tradedb.schema.guards import require_data_migrations, restore_quarantined_originals

__all__ = ["require_data_migrations", "restore_quarantined_originals"]
