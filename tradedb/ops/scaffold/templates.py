"""The files ``tradedb data new`` writes: a data-migration declaration (SQL or pandas step) and its test.

Every part the author must write is marked ``TODO(scaffold)``; ``tradedb lint`` fails while a marker, the
docstring's placeholder line or its ``TODO-000`` ticket is left. As written, the declaration loads and runs (its
``pending_where`` is ``FALSE``, so it migrates nothing) and the test fails, saying the migration has nothing to
do: a scaffold cannot be shipped unfinished by accident.
"""

from __future__ import annotations

from string import Template

MARKER = "TODO(scaffold)"

DOCSTRING = '''"""${marker}: what this data migration does to ${table} and why, in one line.

Ticket: TODO-000 (the issue this belongs to, as in the revisions' ticket field; `tradedb lint` fails until it
names one). Say what made it needed, which contract revision waits for it, and what happens to a row it cannot
transform (quarantined with its reason, or the run stops: ``on_bad_row``). It runs after revision ${after}:
${after_message}.
"""'''

PENDING = '''# The rows of ${table} (alias t) that still need this migration: the engine walks only these, the contract
# revision's guard counts them, and the run is complete when none is left outside the quarantine.
PENDING = "FALSE"  # ${marker}: e.g. "t.notional IS NULL"'''

DECLARATION = """migration = DataMigration(
    name="${name}",
    after="${after}",
    table="${table}",
    key="${key}",
    description=__doc__,
    pending_where=PENDING,
"""

TAIL = """    # SQL undoing one range (:lo, :hi] for `tradedb data revert`; None when it cannot be undone.
    revert_sql=None,  # ${marker}: e.g. "UPDATE ${table} SET notional = NULL WHERE ${key} > :lo AND ${key} <= :hi"
    # Rules that hold once it is done, each as SQL selecting the rows that break it (Dagster's blocking check).
    invariants=(
        Invariant(
            "todo_rule",  # ${marker}: name the rule
            "SELECT t.${key} FROM ${table} t WHERE FALSE",  # ${marker}: the rows that break it
        ),
    ),
    on_bad_row="quarantine",  # or "stop": fail the run at the first row it cannot transform
)
"""

SQL_MODULE = Template(
    DOCSTRING
    + """

from data_migrations.base import DataMigration, Invariant, SqlStep

"""
    + PENDING
    + "\n\n"
    + DECLARATION
    + '''    # One batch: the pending rows of the key range (:lo, :hi], in the batch's own transaction with its checkpoint.
    # It must be idempotent: a batch that did not commit runs again after a crash.
    step=SqlStep(
        update_sql=f"""
            UPDATE ${table} t SET ${key} = t.${key}  -- ${marker}: the new values, e.g. notional = t.price * t.quantity
            WHERE t.${key} > :lo AND t.${key} <= :hi AND {PENDING}
        """,
        # SELECT key, reason for the rows of the range that cannot be transformed (update_sql must leave them
        # alone): they go to the quarantine with their original row. None when every pending row can be migrated.
        reject_sql=None,
    ),
'''
    + TAIL
)

PANDAS_MODULE = Template(
    DOCSTRING
    + """

import pandas as pd

from data_migrations.base import DataMigration, Invariant, PandasStep, TransformResult

"""
    + PENDING
    + '''


def transform(batch: pd.DataFrame) -> TransformResult:
    """One batch as ``read_sql`` selects it -> the rows to write back, and the rows it cannot transform (key, reason)."""
    rows = batch[["${key}"]]  # ${marker}: compute the new columns, named as in result_columns
    rejected = pd.DataFrame({"key": [], "reason": []})  # these go to the quarantine with their original row
    return TransformResult(rows=rows, rejected=rejected)


'''
    + DECLARATION
    + '''    # One batch: read the pending rows of (:lo, :hi], transform them in pandas, COPY the result into the temporary
    # table batch_result and write it back with one statement, all in the batch's own transaction. Idempotent.
    step=PandasStep(
        read_sql=f"SELECT t.${key} FROM ${table} t WHERE t.${key} > :lo AND t.${key} <= :hi AND {PENDING} ORDER BY t.${key}",
        transform=transform,
        result_columns={"${key}": "${key_type}"},  # ${marker}: every column transform returns -> its SQL type
        write_sql="""
            UPDATE ${table} t SET ${key} = r.${key}  -- ${marker}: the new values, from batch_result r
            FROM batch_result r WHERE t.${key} = r.${key} AND t.${key} > :lo AND t.${key} <= :hi  -- keeps the join on the batch
        """,
    ),
'''
    + TAIL
)

TEST_MODULE = Template('''"""Tests of data migration ${name}.

On the sample trading data every pending row is migrated (or quarantined with its reason) and its checks pass, as
Dagster's blocking checks must before the contract revision may run.

${marker}: add the cases that matter to this migration (edge values, rows it must reject, a second run).
"""

from data_migrations import checks, engine, get
from tests.helpers import deployed_to
from tradedb.core.db import connect_checked
from tradedb.schema.pending_rows import count_pending

NAME = "${name}"


def test_migrates_every_pending_row_of_the_sample_data(env):
    migration = get(NAME)
    deployed_to(env, migration.after, rows=300)  # release 1.0 sample data, deployed up to `after`
    with connect_checked(env) as conn:
        pending = count_pending(conn, migration)
    assert pending > 0, f"{NAME} has nothing to do on the sample data: fill in its pending_where"

    result = engine.run(env.url, NAME, engine.RunOptions(environment=env.name))

    assert result.status == "finished", result.stop_reason
    assert result.rows_done + result.rows_quarantined == pending
    with connect_checked(env) as conn:
        failing = [c for c in checks.data_checks(conn, migration) if not c.passed]
    assert not failing, failing
''')
