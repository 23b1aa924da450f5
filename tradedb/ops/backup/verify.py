"""Checking a dump before it is trusted, and a restored copy against the manifest's checksums.

``pg_restore --list`` must read the dump's table of contents and every manifest table must have its data file,
before anything is touched; after a restore, every table's checksum must match the one taken with the dump.
"""

from __future__ import annotations

import re
import subprocess

from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.ops.backup.manifest import Backup
from tradedb.ops.backup.tools import ClientTools, last_error_line
from tradedb.ops.checksums import database_checksums, differing

APP_SCHEMA = "public"  # the schema of the tables the manifest checksums

LIST_TIMEOUT_S = 120  # for `pg_restore --list`, which reads only the dump's table of contents

# a data entry of `pg_restore --list`: "3367; 0 16404 TABLE DATA public accounts owner"
TABLE_DATA_ENTRY = re.compile(
    r"^(?P<id>\d+); \d+ \d+ TABLE DATA (?P<schema>\S+) (?P<table>\S+) ", re.MULTILINE
)

DATA_FILE_SUFFIXES = ("", ".gz", ".lz4", ".zst")  # <dump id>.dat plus pg_dump's compression suffix


def verify_restored(backup: Backup, env: Environment) -> list[str]:
    """Tables of ``env`` whose checksum differs from the backup's (appeared or missing ones too); empty when equal."""
    with connect_checked(env) as conn:
        return differing(backup.checksums, database_checksums(conn))


def _dump_listing(tools: ClientTools, backup: Backup) -> str:
    """The dump's table of contents (``pg_restore --list``, no database involved), or an error if unreadable."""
    try:
        listing = subprocess.run(
            [str(tools.pg_restore), "--list", str(backup.path)],
            capture_output=True,
            text=True,
            timeout=LIST_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TradeDBError(f"could not read backup {backup.id}: {exc}; nothing was changed") from None
    if listing.returncode != 0:
        raise TradeDBError(
            f"backup {backup.id} at {backup.path} is unreadable: {last_error_line(listing.stderr)}; "
            "nothing was changed"
        )
    return listing.stdout


def check_dump(tools: ClientTools, backup: Backup) -> None:
    """Refuse a dump that cannot be restored whole, before the target is touched.

    Checks that pg_restore reads the dump's table of contents, that every table the manifest has a checksum for
    has a data entry in it, and that every data entry's file is in the folder. This runs before every restore,
    because the in-place fallback for a role that may not create databases has no scratch copy to fail on first;
    it does not read the data files' contents: only a restore and the checksum comparison prove those.
    """
    data = {
        match["table"]: match["id"]
        for match in TABLE_DATA_ENTRY.finditer(_dump_listing(tools, backup))
        if match["schema"] == APP_SCHEMA
    }
    missing = sorted(set(backup.checksums) - set(data))
    missing += sorted(
        table
        for table, dump_id in data.items()
        if not any((backup.path / f"{dump_id}.dat{suffix}").is_file() for suffix in DATA_FILE_SUFFIXES)
    )
    if missing:
        raise TradeDBError(
            f"backup {backup.id} at {backup.path} is incomplete: no data for table(s) {', '.join(missing)}; "
            "nothing was changed"
        )
