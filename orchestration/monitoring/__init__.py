"""Monitoring: the ledger report per environment, materialised so the UI plots its numbers over time."""
