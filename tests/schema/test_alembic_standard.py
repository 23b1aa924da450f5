"""pytest-alembic's standard tests on a real PostgreSQL database (fixtures ``alembic_engine``/``alembic_config``).

single head; upgrade base -> head one step at a time; the models match the DDL the revisions produce; every
revision can be downgraded after upgrading (up-down consistency).
"""

from pytest_alembic.tests import (  # noqa: F401 - imported to be collected here
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
