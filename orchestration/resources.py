"""Resources: the migration lock held for a whole run.

With the in-process executor (the default for migration jobs) resources live exactly as long as the run, so the
session-level advisory lock is taken at the first step that touches an environment and released when the run
ends: nothing from the CLI, plain alembic or another launch can migrate in between, and a second launch fails at
once with who holds the lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dagster as dg

from tradedb.db import make_engine
from tradedb.locks import migration_lock
from tradedb.settings import Environment, resolve_environment


class HeldLocks:
    """The locks this run holds, by environment name; ``hold`` is idempotent."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._held: dict[str, Environment] = {}

    def hold(self, env_name: str) -> Environment:
        """Resolve ``env_name`` and hold its migration lock until the run ends; return the environment."""
        if env_name not in self._held:
            env = resolve_environment(env_name)
            engine = make_engine(env)
            self._stack.callback(engine.dispose)
            self._stack.enter_context(migration_lock(engine, env))
            self._held[env_name] = env
        return self._held[env_name]


class MigrationLockResource(dg.ConfigurableResource):
    """Hands assets a ``HeldLocks``; every lock it took is released at teardown (the end of the run)."""

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[HeldLocks]:
        with ExitStack() as stack:
            yield HeldLocks(stack)
