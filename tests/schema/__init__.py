"""Tests of the schema layer: the strategy's alembic commands, contract guards, the migration lock, the ledger."""
