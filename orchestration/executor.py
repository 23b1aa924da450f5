"""The deploy jobs' executor: every step in the run's own process, or data migrations side by side.

``parallel: 1`` (the default): Dagster's in-process executor. Steps run one after another in the run's process,
where the ``guard`` resource takes the environment's migration lock at the first step and holds it to the end:
quick (no process per step) and what a small deploy wants.

``parallel: N`` (N > 1; ``tradedb deploy --parallel N`` or the launchpad's run config): Dagster's multiprocess
executor runs up to N steps at once, each in a process of its own (forkserver, preloading the code location).
Pools keep it safe: schema steps share the ``tradedb_schema`` pool and data migrations get one pool per
environment and table, each limited to 1 by ``dagster.yaml``, so schema steps stay serial, migrations on
different tables run side by side, and two on one table never do. Since no step process lives for the whole run,
the run's own process takes the migration lock before the first step and holds it until the last
(``RunLockingExecutor``), on a session named ``tradedb-run:<run id>``; each step's guard recognises its run's
lock by that name. A second deploy of the environment is still refused, whatever its executor. The price is a
process per step (about a second each here), worth paying when data migrations take minutes.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.executor.multiprocess import MultiprocessExecutor

from orchestration.rehearsal.assets import latest_rehearsal
from tradedb.core.db import make_engine
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import resolve_environment
from tradedb.ops.plan import build_plan
from tradedb.schema.locks import migration_lock, run_lock_application

PRELOAD = ["orchestration.definitions"]  # the forkserver imports the code location once, not once per step
PARALLEL = "parallel"


def _requirements(config) -> list:
    return multiple_process_executor_requirements() if config.get(PARALLEL, 1) > 1 else []


@dg.executor(
    name="tradedb_deploy",
    config_schema={
        PARALLEL: dg.Field(
            int,
            default_value=1,
            description="Steps at once. 1: one after another in the run's process. N > 1: up to N in processes of "
            "their own, so data migrations on different tables run side by side (schema steps stay serial).",
        )
    },
    requirements=_requirements,
)
def deploy_executor(init_context: dg.InitExecutorContext) -> Executor:
    parallel = init_context.executor_config[PARALLEL]
    if parallel <= 1:
        return InProcessExecutor(retries=RetryMode.ENABLED, marker_to_close=None)
    return RunLockingExecutor(
        MultiprocessExecutor(
            retries=RetryMode.ENABLED,
            max_concurrent=parallel,
            start_method="forkserver",
            explicit_forkserver_preload=PRELOAD,
        )
    )


class RunLockingExecutor(Executor):
    """Holds the run's environment's migration lock in the run's own process around ``inner``'s execution."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    @property
    def retries(self) -> RetryMode:
        return self.inner.retries

    def execute(self, plan_context, execution_plan) -> Iterator:
        run = plan_context.dagster_run
        env_name = run.tags.get("environment")
        if not env_name:  # not a deploy: nothing to lock
            yield from self.inner.execute(plan_context, execution_plan)
            return
        env = resolve_environment(env_name)
        engine = make_engine(env, connect_args={"application_name": run_lock_application(run.run_id)})
        try:
            with migration_lock(engine, env):
                plan_context.log.info(f"{env_name}: migration lock held by the run for its steps")
                self._log_plan(plan_context, env)
                yield from self.inner.execute(plan_context, execution_plan)
        finally:
            engine.dispose()

    @staticmethod
    def _log_plan(plan_context, env) -> None:
        """The deployment plan, once for the run (each step process's guard does not log it again)."""
        try:
            deployment = build_plan(env, latest_rehearsal(plan_context.instance))
        except TradeDBError as exc:
            plan_context.log.warning(f"no deployment plan for {env.name}: {exc}")
            return
        plan_context.log.info(f"deployment plan for {env.name}:\n{deployment.markdown()}")
