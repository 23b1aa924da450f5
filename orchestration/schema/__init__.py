"""Schema area: one asset per Alembic revision, per environment."""
