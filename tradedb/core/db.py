"""Engines and connections, with unreachable databases turned into one clear line; plain questions any layer asks
of a database (its app tables, its size)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment

APP_NAME = "tradedb"


def make_engine(env: Environment, **kwargs) -> Engine:
    """Create an engine for an environment; connection failures surface on first use via ``connect_checked``."""
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("application_name", APP_NAME)
    connect_args.setdefault("connect_timeout", 10)
    return create_engine(env.url, connect_args=connect_args, **kwargs)


def unreachable(env: Environment, exc: OperationalError) -> TradeDBError:
    """Build the error for a database that cannot be reached; the driver's first line, never the password."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
    if env.url.password:
        reason = reason.replace(env.url.password, "***")
    return TradeDBError(f"cannot reach the {env.name} database at {env.safe_url}: {reason}")


@contextmanager
def connect_checked(env: Environment, engine: Engine | None = None) -> Iterator:
    """Yield a connection in a transaction (committed on success), translating connection failures."""
    own = engine is None
    engine = engine or make_engine(env)
    try:
        try:
            conn_cm = engine.begin()
            conn = conn_cm.__enter__()
        except OperationalError as exc:
            raise unreachable(env, exc) from None
        try:
            yield conn
        except BaseException as exc:
            conn_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            conn_cm.__exit__(None, None, None)
    finally:
        if own:
            engine.dispose()


def ping(env: Environment) -> None:
    """Fail with a clear error unless the environment's database answers."""
    with connect_checked(env) as conn:
        conn.execute(text("SELECT 1"))


def app_tables(conn: Connection) -> list[str]:
    """Tables in the app schema (Alembic's version table and our own state schema do not count)."""
    return list(
        conn.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' "
                "ORDER BY tablename"
            )
        )
    )


def database_size(conn: Connection) -> int:
    """Bytes on disk of the current database (for before/after metadata)."""
    return int(conn.scalar(text("SELECT pg_database_size(current_database())")))
