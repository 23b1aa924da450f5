"""The app's SQLAlchemy models, one module per feature; importing this package registers them all on ``metadata``."""

from tradedb.core.models import common, discord, events, execution, setups, strategy
from tradedb.core.models.base import NAMING_CONVENTION, Base, metadata

__all__ = [
    "Base",
    "metadata",
    "NAMING_CONVENTION",
    "common",
    "events",
    "setups",
    "strategy",
    "execution",
    "discord",
]
