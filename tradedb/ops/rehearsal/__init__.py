"""The staging rehearsal: run the production deploy on a copy of production and measure what it will cost.

``rehearsing`` runs one (refresh, measured deploy, head checks, round trip); ``refresh`` restores staging from
production's backup and tells the two databases apart; ``sampler`` watches locks while a step runs; ``round_trip``
says which tables may legitimately differ after a downgrade; ``report`` is what was measured, as the Dagster asset
stores it. The deploy order and the code fingerprint are ``tradedb.ops.deploy_order``.

May import: the rest of ``tradedb.ops`` (backups, validate, the pipeline), ``data_migrations``, ``tradedb.schema``
and ``tradedb.core``.
"""

from tradedb.ops.rehearsal.refresh import Refreshed, refresh_from_production
from tradedb.ops.rehearsal.rehearsing import rehearse
from tradedb.ops.rehearsal.report import (
    CheckOutcome,
    RehearsalFailed,
    RehearsalReport,
    StepMeasurement,
)
from tradedb.ops.rehearsal.sampler import SAMPLE_MS, LockSampler

__all__ = [
    "SAMPLE_MS",
    "CheckOutcome",
    "LockSampler",
    "Refreshed",
    "RehearsalFailed",
    "RehearsalReport",
    "StepMeasurement",
    "refresh_from_production",
    "rehearse",
]
