"""Data area: one asset per data migration, per environment."""
