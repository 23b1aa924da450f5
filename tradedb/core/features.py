"""The six feature areas of the trading app.

Used as folder names for models, revisions and data migrations, and as Dagster asset groups, so a reader finds
"execution" in the same place in every layer.
"""

FEATURES: tuple[str, ...] = ("common", "events", "setups", "strategy", "execution", "discord")
