"""The run guard: what every step of a deploy passes through before it may touch an environment.

With the in-process executor (the default for migration jobs) resources live exactly as long as the run, so the
guard holds, for the whole run and per environment:
- the session-level migration lock (nothing from the CLI, plain alembic or another launch can migrate in between;
  a second launch fails at once naming the holder);
- the maintenance-window gate (``tradedb.ops.windows``): a run outside its window is refused unless the run carries
  the ``tradedb/window_override`` tag with a reason, which is written to the ledger and alerted; the window's
  end becomes the data migrations' deadline, and no schema step starts after it;
- the pre-change backup (``tradedb.ops.backup``): before the first schema step of a production run that changes
  anything, a ``pg_dump`` (directory format) with the table checksums of the same snapshot, which ``tradedb
  restore`` verifies against; no backup, no change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from orchestration.rehearsal.assets import latest_rehearsal
from tradedb.core import alerts
from tradedb.core.db import make_engine
from tradedb.core.errors import BackupRefused, DeadlinePassed, TradeDBError, first_line
from tradedb.core.launchers import dagster_launcher
from tradedb.core.scrub import scrub
from tradedb.core.settings import Environment, resolve_environment
from tradedb.ops import windows
from tradedb.ops.backup import list_backups, take_backup
from tradedb.ops.plan import BACKUP_ENVIRONMENTS, Plan, build_plan
from tradedb.schema import ledger
from tradedb.schema.locks import migration_lock, run_lock_application

OVERRIDE_TAG = "tradedb/window_override"
DEADLINE_TAG = "tradedb/deadline"


@dataclass
class Held:
    """One environment as this run holds it, and the plan it started with."""

    env: Environment
    gate: windows.GateResult
    plan: Plan | None = None
    backup_id: str | None = None
    by_run: bool = False  # the run's own process holds the lock (steps run in processes of their own)


class RunGuard:
    """Locks, window gates and backups of one run, by environment name; every method is idempotent."""

    def __init__(self, stack: ExitStack, run_id: str, tags: dict[str, str], log=None, instance=None) -> None:
        self._stack = stack
        self._held: dict[str, Held] = {}
        self.run_id = run_id
        self.tags = tags
        self.log = log
        self.instance = instance

    def hold(self, env_name: str) -> Environment:
        """Resolve ``env_name``, pass its window gate and hold its migration lock until the run ends."""
        if env_name not in self._held:
            gate = windows.require_window(env_name, override_reason=self.tags.get(OVERRIDE_TAG))
            env = resolve_environment(env_name)
            engine = make_engine(env)
            self._stack.callback(engine.dispose)
            by_run = self._stack.enter_context(
                migration_lock(engine, env, owner=run_lock_application(self.run_id))
            )
            # under the run's own lock (steps in processes of their own), each step is one of many: the run
            # logged its plan once, and the override is recorded once
            self._held[env_name] = Held(env, gate, self._plan(env, log_it=not by_run), by_run=by_run)
            if gate.overridden and not (by_run and self._override_recorded(engine)):
                self._record_override(engine, env, gate)
        return self._held[env_name].env

    def planned(self, env_name: str, kind: str, name: str) -> dict:
        """The plan's figures for one step, as metadata beside what the step really did."""
        held = self._held.get(env_name)
        step = (
            next((s for s in held.plan.steps if (s.kind, s.name) == (kind, name)), None)
            if held and held.plan
            else None
        )
        if step is None:
            return {}
        first = held.plan.steps[0] is step and not held.by_run
        return {
            "planned_estimate": step.estimate_text,
            "planned_lock": step.lock_text,
            "planned_window": f"{'window' if step.needs_window else 'online'}: {step.why}",
            "rollback": step.rollback,
            # the whole plan once per run, on its first step, so the run's page shows its rollback plan
            **({"deployment_plan": dg.MetadataValue.md(held.plan.markdown())} if first else {}),
        }

    def _plan(self, env: Environment, *, log_it: bool = True) -> Plan | None:
        """The deployment plan at the start of the run, logged whole (the rollback plan of this run)."""
        try:
            deployment = build_plan(env, latest_rehearsal(self.instance) if self.instance else None)
        except TradeDBError as exc:
            if self.log:
                self.log.warning(f"no deployment plan for {env.name}: {exc}")
            return None
        if self.log and log_it:
            self.log.info(f"deployment plan for {env.name}:\n{deployment.markdown()}")
        return deployment

    def deadline(self, env_name: str) -> datetime | None:
        """When data migrations must stop: the window's end, or the run's own earlier ``tradedb/deadline`` tag."""
        self.hold(env_name)
        candidates = [self._held[env_name].gate.deadline, self.tag_deadline()]
        return min((d for d in candidates if d is not None), default=None)

    def tag_deadline(self) -> datetime | None:
        """The operator's deadline for this run (``tradedb deploy --deadline``): it may only shorten a window."""
        raw = self.tags.get(DEADLINE_TAG)
        if not raw:
            return None
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise TradeDBError(f"malformed {DEADLINE_TAG} tag {raw!r}: expected an ISO time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def before_schema_change(self, env_name: str) -> None:
        """Called right before a schema step changes ``env_name``: window still open, backup taken.

        The deadline is checked again after the backup, because a large dump can itself run past the window's end.
        """
        held = self._held[env_name]
        self._require_before_deadline(env_name)
        if env_name in BACKUP_ENVIRONMENTS and held.backup_id is None:
            held.backup_id = self._backup(held.env)
            if held.plan is not None:  # from now on the rollbacks name this backup
                held.plan = held.plan.with_backup(held.backup_id)
            self._require_before_deadline(env_name)

    def _require_before_deadline(self, env_name: str) -> None:
        deadline = self.deadline(env_name)
        if deadline is not None and datetime.now(UTC) >= deadline:
            raise DeadlinePassed(
                f"the {env_name} run's deadline {deadline:%Y-%m-%d %H:%M:%S} UTC has passed: no further schema "
                "step starts in this run; the next window's run continues from here"
            )

    def backup_id(self, env_name: str) -> str | None:
        held = self._held.get(env_name)
        return held.backup_id if held else None

    def _backup(self, env: Environment) -> str:
        reason = f"before deploy run {self.run_id}"
        if self._held[env.name].by_run:  # another step process of this run may have taken it already
            earlier = next((b for b in list_backups(env) if b.reason == reason), None)
            if earlier is not None:
                return earlier.id
        try:
            taken = take_backup(env, reason=reason, launched_by=dagster_launcher(self.run_id))
        except Exception as exc:  # any failure to back up, not only ours, means no change
            reason = scrub(first_line(exc))
            raise BackupRefused(
                f"no successful backup of {env.name}, so no schema change was made: {reason}"
            ) from None
        if self.log:
            self.log.info(
                f"{env.name}: backup {taken.id} taken before the first schema change ({taken.path})"
            )
        return taken.id

    def _override_recorded(self, engine) -> bool:
        """Whether a step of this run has already written its override to the ledger."""
        with engine.connect() as conn:
            return any(e["kind"] == "override" and e["run_id"] == self.run_id for e in ledger.entries(conn))

    def _record_override(self, engine, env: Environment, gate: windows.GateResult) -> None:
        launched_by = dagster_launcher(self.run_id)
        started = ledger.now()
        ledger.record_apart(
            engine,
            ledger.LedgerEntry(
                kind="override",
                name="maintenance_window",
                direction="override",
                environment=env.name,
                launched_by=launched_by,
                run_id=self.run_id,
                started_at=started,
                finished_at=started,
                outcome="success",
                detail={"reason": gate.override_reason, "gate": gate.reason},
            ),
        )
        alerts.send(
            env.name,
            alerts.WINDOW_OVERRIDE,
            f"{env.name} run {self.run_id[:8]} started outside its maintenance window",
            gate.override_reason or "",
            {"launched_by": launched_by},
        )
        if self.log:
            self.log.warning(gate.reason)


class RunGuardResource(dg.ConfigurableResource):
    """Hands assets a ``RunGuard``; every lock it took is released at teardown (the end of the run)."""

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[RunGuard]:
        run = context.run
        with ExitStack() as stack:
            yield RunGuard(
                stack,
                run.run_id if run else "adhoc",
                dict(run.tags) if run else {},
                context.log,
                context.instance,
            )
