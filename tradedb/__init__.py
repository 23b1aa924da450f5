"""tradedb: orchestrated, checkpointed migrations for the A+ Trading App database.

The package is layered; a module's folder says what it may import (imports only go down, checked by import-linter
contracts in ``pyproject.toml``):

- ``tradedb.cli``: the console script, on top of everything;
- ``orchestration`` (top-level package): the Dagster code location;
- ``tradedb.ops``: production safety and monitoring (windows, backups, rehearsal, plan, lint, reports...);
- ``data_migrations`` (top-level package): the batch engine and the app's data migrations;
- ``tradedb.schema``: the Alembic wrapper, the migration lock, the contract guard, the ledger;
- ``tradedb.core``: settings and environments, connections, errors, alerts, the app's models.

``tradedb.guards`` is the stable path applied revision files import the contract guard from.
"""
