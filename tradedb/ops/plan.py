"""The deployment plan: the strategy's rollback plan and downtime assessment, computed instead of written by hand.

For an environment: what is pending, in the order the deploy runs it, each step's duration and longest ACCESS
EXCLUSIVE lock as the last staging rehearsal measured them, whether it needs a maintenance window or can run
online, the backup a rollback would restore, and the exact command that rolls each step back. The production
schedule's fit decision uses the same figures (``Plan.estimated_seconds``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import data_migrations
from tradedb import schema
from tradedb.core.db import connect_checked
from tradedb.core.settings import Environment
from tradedb.ops.backup import latest_backup
from tradedb.ops.deploy_order import Step, deploy_order, fingerprint
from tradedb.ops.rehearsal import RehearsalReport, estimated_seconds
from tradedb.schema.pending_rows import count_pending

ONLINE_LOCK_MS = 200.0  # a schema step whose rehearsed ACCESS EXCLUSIVE lock stays under this may run online
BACKUP_ENVIRONMENTS = ("production",)  # environments whose schema never changes without a fresh backup


@dataclass
class PlanStep:
    kind: str
    name: str
    feature: str
    description: str
    estimated_s: float | None
    longest_lock_ms: float | None
    lock_relation: str | None
    needs_window: bool
    why: str
    rollback: str

    @property
    def estimate_text(self) -> str:
        return "unknown" if self.estimated_s is None else f"{self.estimated_s:,.1f} s"

    @property
    def lock_text(self) -> str:
        if self.longest_lock_ms is None:
            return "unknown"
        if self.lock_relation is None:
            return "none seen"
        return f"{self.longest_lock_ms:,.0f} ms on {self.lock_relation}"


@dataclass
class Plan:
    environment: str
    current: str | None
    head: str
    steps: list[PlanStep] = field(default_factory=list)
    backup: str = ""
    rehearsal: str = ""
    rehearsal_current: bool = False
    estimated_seconds: float | None = None  # None: some pending step was never rehearsed, or the code changed
    backup_seconds: float = 0.0  # the run's own backup, timed like the last one (included in the estimate)
    fingerprint: str = ""  # of the revisions and data migrations in code when the plan was made
    restore: str = ""  # the restore command the rollbacks of data-dropping steps name

    def with_backup(self, backup_id: str) -> Plan:
        """This plan once the run has taken its backup: rollbacks name it (nothing is measured again)."""
        restore = restore_command(self.environment, backup_id)
        steps = [replace(s, rollback=s.rollback.replace(self.restore, restore)) for s in self.steps]
        return replace(self, steps=steps, backup=backup_id, restore=restore)

    @property
    def needs_window(self) -> bool:
        return any(s.needs_window for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "needs_window": self.needs_window}

    def markdown(self) -> str:
        """The plan as a table for Dagster metadata."""
        lines = [
            f"**{self.environment}**: {self.current or 'empty'} -> {self.head}; backup: {self.backup}; "
            f"rehearsal: {self.rehearsal}",
            "",
            "| step | estimate | longest lock | window | rollback |",
            "| --- | --- | --- | --- | --- |",
        ]
        for s in self.steps:
            lines.append(
                f"| {s.kind} {s.name} | {s.estimate_text} | {s.lock_text} | "
                f"{'window' if s.needs_window else 'online'}: {s.why} | `{s.rollback}` |"
            )
        return "\n".join(lines)


def pending_steps(env: Environment) -> tuple[str | None, list[Step]]:
    """The environment's revision and the deploy steps still to run (finished data migrations left out)."""
    with connect_checked(env) as conn:
        current = schema.current_revision(env, conn)
        steps = deploy_order(current)
        applied = {r.revision for r in schema.revisions()} - {s.name for s in steps if s.kind == "schema"}
        kept = []
        for step in steps:
            if step.kind == "data":
                m = data_migrations.get(step.name)
                if m.after in applied and not count_pending(conn, m):
                    continue
            kept.append(step)
    return current, kept


def build_plan(env: Environment, rehearsal: RehearsalReport | None) -> Plan:
    """The plan for ``env`` now, with the rehearsal's figures where it measured the step."""

    current, steps = pending_steps(env)
    plan = Plan(env.name, current, schema.head(), fingerprint=fingerprint())
    latest = latest_backup(env)
    takes_own = env.name in BACKUP_ENVIRONMENTS
    if takes_own:
        plan.backup = f"a new backup taken by the run (latest now: {latest.id if latest else 'none'})"
    else:
        plan.backup = latest.id if latest else "none"
    plan.restore = restore_command(env.name, "latest" if takes_own else latest.id if latest else None)
    if rehearsal is None:
        plan.rehearsal = "none yet: run `tradedb rehearse`"
    else:
        plan.rehearsal_current = rehearsal.fingerprint == plan.fingerprint
        stale = "" if plan.rehearsal_current else " (code changed since: estimates are stale)"
        plan.rehearsal = f"{rehearsal.fingerprint} at {rehearsal.started_at:%Y-%m-%d %H:%M} UTC{stale}"
    measured = {(s.kind, s.name): s for s in rehearsal.steps} if rehearsal else {}
    for step in steps:
        plan.steps.append(_plan_step(env, step, measured.get((step.kind, step.name)), plan.restore))
    if takes_own and steps and latest is not None:
        plan.backup_seconds = latest.duration_s  # the run's own backup takes about as long as the last one
    if rehearsal is not None and plan.rehearsal_current:
        plan.estimated_seconds = estimated_seconds(rehearsal, steps) + plan.backup_seconds
    return plan


def restore_command(env_name: str, backup: str | None) -> str:
    """The exact restore a rollback of a data-dropping step needs.

    Production's run takes its own backup before its first change, so until a run has named it, the command is
    ``restore latest``: right after the run, the latest backup is that one (``Plan.with_backup`` names it).
    """
    if backup is None:
        return f"tradedb backup --env {env_name}  (no backup yet: take one before deploying)"
    return f"tradedb restore {backup} --env {env_name}"


def _plan_step(env: Environment, step: Step, measured, restore: str) -> PlanStep:
    if step.kind == "data":
        m = data_migrations.get(step.name)
        rollback = (
            f"tradedb data revert {m.name} --env {env.name}"
            if m.reversible
            else f"{restore}  (not reversible)"
        )
        return PlanStep(
            "data",
            m.name,
            m.feature,
            m.description.splitlines()[0] if m.description else "",
            measured.seconds if measured else None,
            measured.longest_lock_ms if measured else None,
            measured.lock_relation if measured else None,
            False,
            "batched: row locks for a fraction of a second per batch, stops at the window's end",
            rollback,
        )
    info = next(r for r in schema.revisions() if r.revision == step.name)
    rollback = f"alembic -x env={env.name} downgrade {info.down_revision or 'base'}"
    if not info.preserves_data:
        rollback += f"; the data it drops comes back only with: {restore}"
    needs, why = _needs_window(info, measured)
    return PlanStep(
        "schema",
        info.revision,
        info.feature,
        info.message.splitlines()[0],
        measured.seconds if measured else None,
        measured.longest_lock_ms if measured else None,
        measured.lock_relation if measured else None,
        needs,
        why,
        rollback,
    )


def _needs_window(info: schema.RevisionInfo, measured) -> tuple[bool, str]:
    if measured is None:
        return True, "not rehearsed: lock time unknown"
    if info.requires_data:
        return True, "contract step after a data migration"
    if measured.longest_lock_ms >= ONLINE_LOCK_MS:
        return True, f"ACCESS EXCLUSIVE for {measured.longest_lock_ms:,.0f} ms in rehearsal"
    return False, f"longest ACCESS EXCLUSIVE lock {measured.lock_text} in rehearsal"
