"""Alembic environment for the A+ Trading App.

Works the same from plain ``alembic`` and from our code:
- the target is an environment (``-x env=...``, ``TRADEDB_ENV``, default ``dev``), resolved by ``tradedb.settings``;
- code may hand over an Engine or a Connection in ``config.attributes["connection"]`` (pytest-alembic hands an
  Engine, the sharing-a-connection recipe a Connection) and then logging is left alone, because the template's
  ``fileConfig()`` would silence Dagster's loggers;
- online runs take the session-level advisory lock so two migrations can never interleave, unless the caller
  already holds it (``config.attributes["lock_held"]``);
- each revision commits on its own, so a contract revision refused for pending data leaves the database at the
  last good revision, never half-applied.
"""

from alembic import context
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from tradedb import schema
from tradedb.db import make_engine, unreachable
from tradedb.guards import reset_data_on_downgrade
from tradedb.locks import migration_lock
from tradedb.models import metadata
from tradedb.settings import Environment, resolve_environment

config = context.config
x_args = context.get_x_argument(as_dictionary=True)

if (
    config.config_file_name is not None
    and not config.attributes.get("connection")
    and not config.attributes.get("skip_logging_config")
):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)

CONFIGURE_OPTS = dict(
    target_metadata=metadata,
    include_name=schema.include_name,
    compare_type=True,
    compare_server_default=False,
    transaction_per_migration=True,
    process_revision_directives=schema.place_new_revision(x_args.get("feature")),
    on_version_apply=reset_data_on_downgrade,
)


def run_migrations_offline() -> None:
    """Render SQL (``--sql``) without touching any database, so reviewing never needs a server."""
    context.configure(dialect_name="postgresql", literal_binds=True, **CONFIGURE_OPTS)
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **CONFIGURE_OPTS)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        # alembic leaves the outer transaction open when it was handed a Connection; committing here is what
        # keeps an upgrade from being silently rolled back when the caller closes the connection.
        connection.commit()


def run_migrations_online() -> None:
    """Run against the environment's database (or the connection the caller handed us)."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run_on(given)
        return
    if isinstance(given, Engine):
        env = config.attributes.get("environment") or Environment("given", given.url, embedded=False)
        engine = given
    else:
        env = config.attributes.get("environment") or resolve_environment(x_args.get("env"))
        engine = make_engine(env)
    try:
        with (
            migration_lock(engine, env, held=bool(config.attributes.get("lock_held"))),
            engine.connect() as connection,
        ):
            _run_on(connection)
    except OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc).lower():
            raise unreachable(env, exc) from None
        raise
    finally:
        if not isinstance(given, Engine):
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
