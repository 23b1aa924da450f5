"""tradedb: the core of the A+ Trading App migration tool.

Settings and environments, connections (embedded PostgreSQL by default), the app's models by feature, the
Alembic wrapper (status, pending, drift, validation), sample data and the CLI. The orchestration and
data-migration layers build on this package; it never imports them at module level.
"""

FEATURES: tuple[str, ...] = ("common", "events", "setups", "strategy", "execution", "discord")
"""The six feature areas, used as folder names for models, revisions, data migrations and asset groups."""
