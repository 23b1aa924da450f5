"""The code location: every area's ``defs`` merged, plus the resources they share.

Load with ``dagster dev -w workspace.yaml`` (or ``dagster definitions validate -w workspace.yaml``).
"""

from __future__ import annotations

import dagster as dg

from orchestration.automation import jobs
from orchestration.checks import checks
from orchestration.data import assets as data_assets
from orchestration.resources import MigrationLockResource
from orchestration.schema import assets as schema_assets

defs = dg.Definitions.merge(
    schema_assets.defs,
    data_assets.defs,
    checks.defs,
    jobs.defs,
    dg.Definitions(resources={"locks": MigrationLockResource()}),
)
