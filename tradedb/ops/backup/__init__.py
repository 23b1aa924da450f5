"""Backups before schema changes, and restores that prove they brought back every row.

A backup is a ``pg_dump --format=directory --jobs=N`` folder under ``<backup root>/<environment>/<id>/`` with a
``manifest.json`` beside the dump, carrying the table checksums of the source taken in the SAME snapshot as the
dump (``dump``). A restore is verified: the dump is restored into a scratch database next to the target, its
checksums compared with the manifest, and only then swapped in by renaming (``restoring``, ``databases``,
``verify``); the target's own history is carried across (``history``). ``tools`` finds and runs the client tools,
``manifest`` keeps, lists and prunes backups, ``settings`` says where they go and turns setup slips into one line.

May import: ``tradedb.schema`` and ``tradedb.core`` (and ``tradedb.ops.checksums``). Callers use the names below.
"""

from tradedb.ops.backup.dump import take_backup
from tradedb.ops.backup.manifest import MANIFEST, Backup, find_backup, latest_backup, list_backups, prune
from tradedb.ops.backup.restoring import RestoreBlocked, RestoreResult, check_restore_allowed, restore
from tradedb.ops.backup.settings import backup_root, default_jobs, environment_folder, keep_count
from tradedb.ops.backup.tools import TOOLS, ClientTools, client_tools

__all__ = [
    "MANIFEST",
    "TOOLS",
    "Backup",
    "ClientTools",
    "RestoreBlocked",
    "RestoreResult",
    "backup_root",
    "check_restore_allowed",
    "client_tools",
    "default_jobs",
    "environment_folder",
    "find_backup",
    "keep_count",
    "latest_backup",
    "list_backups",
    "prune",
    "restore",
    "take_backup",
]
