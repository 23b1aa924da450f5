"""Database URLs: parsed once, always with the psycopg2 driver.

SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed; every URL the tool builds or
reads goes through ``normalise_url`` so the driver is never left to that default.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tradedb.core.errors import TradeDBError

DRIVER = "postgresql+psycopg2"


def normalise_url(raw: str, source: str) -> URL:
    """Parse a database URL and force the psycopg2 driver; ``source`` names where it came from for errors."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise TradeDBError(
            f"malformed database URL in {source}: expected postgresql://user@host:port/dbname"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise TradeDBError(f"database URL in {source} is not PostgreSQL ({url.get_backend_name()!r})")
    if not url.database:
        raise TradeDBError(f"database URL in {source} names no database")
    return url.set(drivername=DRIVER)
