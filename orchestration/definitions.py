"""The code location: every area's ``defs`` merged, plus the resources they share.

Load with ``dagster dev -w workspace.yaml`` (or ``dagster definitions validate -w workspace.yaml``).
"""

from __future__ import annotations

import dagster as dg

from orchestration.automation import jobs, schedules, sensors
from orchestration.checks import checks
from orchestration.data import assets as data_assets
from orchestration.monitoring import assets as monitoring_assets
from orchestration.rehearsal import assets as rehearsal_assets
from orchestration.resources import RunGuardResource
from orchestration.schema import assets as schema_assets

defs = dg.Definitions.merge(
    schema_assets.defs,
    data_assets.defs,
    checks.defs,
    monitoring_assets.defs,
    rehearsal_assets.defs,
    jobs.defs,
    schedules.defs,
    sensors.defs,
    dg.Definitions(resources={"guard": RunGuardResource()}),
)
