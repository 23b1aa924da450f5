"""The schema layer: the Alembic history and everything that guards or records a change to it.

Holds the Alembic wrapper (``history``: the revisions and where a database stands; ``commands``: upgrade,
downgrade, stamp, offline SQL, new revision files; ``revision_files``: where a new revision goes and what its
template fills in; ``model_diff``: models against a database), our own state schema in the target database
(``state_schema``), the migration lock (``locks``), the pending-rows SQL shared by the contract guard and the data
engine (``pending_rows``), the guard contract revisions call (``guards``) and the ledger (``ledger``).

May import: ``tradedb.core`` only. The data-migration catalog the guard needs is handed in by ``migrations/env.py``
through Alembic's ``config.attributes``, never imported from here.

This module re-exports the Alembic wrapper (``from tradedb import schema; schema.upgrade(env, "head")``), the way
Alembic's own ``alembic.command`` is used; the modules of this package import each other directly.
"""

from tradedb.schema.commands import (
    DDL_LOCK_TIMEOUT,
    ddl_lock_timeout,
    downgrade,
    new_revision,
    render_sql,
    stamp,
    upgrade,
)
from tradedb.schema.history import (
    RevisionInfo,
    alembic_config,
    current_revision,
    head,
    pending,
    resolve_revision,
    revision_info,
    revisions,
    script_directory,
)
from tradedb.schema.model_diff import database_objects, describe_diff, drift, include_name
from tradedb.schema.revision_files import (
    check_feature,
    feature_folder,
    place_new_revision,
    template_args,
    writes_file_only,
)
from tradedb.schema.state_schema import STATE_SCHEMA, has_state_table

__all__ = [
    "DDL_LOCK_TIMEOUT",
    "STATE_SCHEMA",
    "RevisionInfo",
    "alembic_config",
    "check_feature",
    "current_revision",
    "database_objects",
    "ddl_lock_timeout",
    "describe_diff",
    "downgrade",
    "drift",
    "feature_folder",
    "has_state_table",
    "head",
    "include_name",
    "new_revision",
    "pending",
    "place_new_revision",
    "render_sql",
    "resolve_revision",
    "revision_info",
    "revisions",
    "script_directory",
    "stamp",
    "template_args",
    "upgrade",
    "writes_file_only",
]
