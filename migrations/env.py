"""Alembic environment for the A+ Trading App.

Works the same from plain ``alembic`` and from our code:
- the target is an environment (``-x env=...``, ``TRADEDB_ENV``, default ``dev``), resolved by ``tradedb.core.settings``;
- code may hand over an Engine or a Connection in ``config.attributes["connection"]`` (pytest-alembic hands an
  Engine, the sharing-a-connection recipe a Connection) and then logging is left alone, because the template's
  ``fileConfig()`` would silence Dagster's loggers;
- online runs take the session-level advisory lock so two migrations can never interleave, unless the caller
  already holds it (``config.attributes["lock_held"]``);
- each revision commits on its own, so a contract revision refused for pending data leaves the database at the
  last good revision, never half-applied;
- DDL waits at most ``lock_timeout`` (``-x lock_timeout=10s``, ``TRADEDB_LOCK_TIMEOUT``, default 5s) for its lock,
  in online runs and in the rendered ``--sql`` alike: a revision queued behind a long app transaction would
  otherwise block every query on that table behind it; it fails instead, and is retried;
- every step, from whichever entry point, is written to the ledger (``tradedb.schema.ledger``) in the target database:
  a success in the step's own transaction, a failure after its rollback. Callers name themselves with
  ``config.attributes["launched_by"]`` / ``["run_id"]``; plain alembic is recorded as ``alembic:<user>@<host>``;
- contract revisions' guards find the data migrations they require in the catalog this file hands them
  (``config.attributes["data_migrations"]``): the schema layer they live in never imports the data layer above it;
- ``alembic.ini`` sets ``revision_environment = true``, so this file also runs for plain ``alembic revision`` and
  ``alembic merge``: ``-x feature=<f>`` places the new file in ``migrations/<f>/`` and ``-x requires_data=<name>``,
  ``-x ticket=...`` fill the template (``tradedb.schema.revision_files``). Those commands only write a file, so
  they run offline here and need no database.
"""

from alembic import context
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from data_migrations.alembic_hooks import CATALOG, reset_data_on_downgrade
from tradedb import schema
from tradedb.core.db import database_size, make_engine, unreachable
from tradedb.core.launchers import cli_user
from tradedb.core.models import metadata
from tradedb.core.settings import Environment, resolve_environment
from tradedb.schema import ledger
from tradedb.schema.guards import CATALOG_ATTRIBUTE
from tradedb.schema.locks import ddl_lock_timeout, migration_lock

config = context.config
config.attributes.setdefault(
    CATALOG_ATTRIBUTE, CATALOG
)  # what contract revisions' guards look data migrations up in
x_args = context.get_x_argument(as_dictionary=True)
LOCK_TIMEOUT = schema.ddl_lock_timeout(x_args.get("lock_timeout"))
TEMPLATE_ARGS = schema.template_args(config.attributes, x_args)
for _name in TEMPLATE_ARGS.get("requires_data", ()):
    CATALOG.get(_name)  # an unknown data migration is one FAILED line, and no file is written

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
    template_args=TEMPLATE_ARGS,
)


def run_for_new_file() -> None:
    """Plain ``alembic revision`` and ``alembic merge``: only the revision hooks run, offline, without a database."""
    context.configure(dialect_name="postgresql", as_sql=True, **CONFIGURE_OPTS)
    context.run_migrations()


def run_migrations_offline() -> None:
    """Render SQL (``--sql``) without touching any database, so reviewing never needs a server."""
    context.configure(dialect_name="postgresql", literal_binds=True, **CONFIGURE_OPTS)
    with context.begin_transaction():
        context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()


def _recorder(env_name: str, size_before: int | None) -> ledger.SchemaStepRecorder:
    return ledger.SchemaStepRecorder(
        env_name,
        config.attributes.get("launched_by") or cli_user("alembic"),
        config.attributes.get("run_id"),
        size_before,
    )


def _run_on(connection: Connection, recorder: ledger.SchemaStepRecorder) -> None:
    started_here = not connection.in_transaction()
    connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    if started_here:
        connection.commit()
    options = dict(CONFIGURE_OPTS, on_version_apply=[reset_data_on_downgrade, recorder.on_version_apply])
    context.configure(connection=connection, **options)
    config.attributes["launch"] = recorder.launch()  # read by guards' -x finalize_data=true
    recorder.watch(context.get_context())
    try:
        with context.begin_transaction():
            context.run_migrations()
    except Exception as exc:
        recorder.failed(connection, exc)
        recorder.send_alerts()
        timed_out = ddl_lock_timeout(exc, recorder.step_name(), LOCK_TIMEOUT)
        if timed_out is not None:
            raise timed_out from None  # one FAILED line from plain alembic instead of a traceback
        raise
    if connection.in_transaction():
        # alembic leaves the outer transaction open when it was handed a Connection; committing here is what
        # keeps an upgrade from being silently rolled back when the caller closes the connection.
        connection.commit()
    recorder.send_alerts()


def run_migrations_online() -> None:
    """Run against the environment's database (or the connection the caller handed us)."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        env = config.attributes.get("environment")
        _run_on(given, _recorder(env.name if env else "given", None))
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
            _run_on(connection, _recorder(env.name, _size(engine)))
    except OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc).lower():
            raise unreachable(env, exc) from None
        raise
    finally:
        if not isinstance(given, Engine):
            engine.dispose()


def _size(engine: Engine) -> int | None:
    """The database size before the first step (each step's size after is measured in its transaction)."""
    with engine.connect() as conn:
        return database_size(conn)


if schema.writes_file_only(config):
    run_for_new_file()
elif context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
