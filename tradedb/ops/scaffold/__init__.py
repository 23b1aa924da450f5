"""Scaffolds for the next change: a revision with its documentation (``revision``), and a data migration with its
test (``data_migration``, templates in ``templates``), each refusing bad input before it writes anything.

May import: ``data_migrations``, ``tradedb.schema``, ``tradedb.core`` and the rest of ``tradedb.ops``.
"""

from tradedb.ops.scaffold.data_migration import ScaffoldedMigration, new_data_migration
from tradedb.ops.scaffold.revision import NewRevision, new_revision, next_revision_id

__all__ = ["NewRevision", "ScaffoldedMigration", "new_data_migration", "new_revision", "next_revision_id"]
