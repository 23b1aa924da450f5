"""Poison rows on real PostgreSQL: a row the database refuses is found (from how far its refused statement got, or
by narrowing the batches around it) and quarantined with the database's reason; every other row is migrated; the
bound stops a run that sets aside too much; a crash during a search resumes to the same result; the app's own
migrations survive the values real tables hold."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from data_migrations import engine, get
from data_migrations.base import SqlStep
from data_migrations.checks import quarantine_reconciled
from data_migrations.engine import DataMigrationFailed, RunOptions, state
from data_migrations.engine.options import RunResult
from data_migrations.engine.pinpoint import (
    CANDIDATE_SPREAD,
    MAX_PINPOINTED_PER_BATCH,
    REFUSAL_PIECES,
    apply_isolating,
)
from data_migrations.engine.slices import plan_slices
from data_migrations.engine.worker import Worker
from tests.conftest import ROOT, run_cli
from tests.data_migrations import poison
from tests.helpers import scalar, seeded
from tradedb import schema
from tradedb.core.db import connect_checked

BATCH = 100  # rows per batch in these tests: poison rows are placed at its start, middle and end


def pinned(size: int = BATCH, **kw) -> RunOptions:
    return RunOptions(initial_batch=size, min_batch=size, max_batch=size, throttle=False, **kw)


def migrated_table(env) -> list[tuple]:
    with create_engine(env.url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    f"SELECT id, amount, doc::text, day, ratio, code_u, migrated FROM {poison.TABLE} ORDER BY id"
                )
            )
        ]


def batch_ranges(env, name: str) -> list[tuple[int, int]]:
    with create_engine(env.url).connect() as conn:
        rows = conn.execute(
            text("SELECT lo, hi FROM tradedb_migrations.data_migration_batches WHERE name = :n ORDER BY lo"),
            {"n": name},
        )
        return [(r.lo, r.hi) for r in rows]


def quarantined(env, name: str) -> dict[int, dict]:
    with create_engine(env.url).connect() as conn:
        rows = conn.execute(
            text("SELECT row_key, reason, row_data FROM tradedb_migrations.quarantine WHERE migration = :n"),
            {"n": name},
        )
        return {r.row_key: {"reason": r.reason, "row": r.row_data} for r in rows}


# batch 1: poison at its start; batch 2: several kinds in its middle; batch 3: at its end (and one more)
PLACEMENT = {
    1 + 1: "json",
    150: "overflow",
    151: "date",
    152: "zero",
    153: "negative",
    250: "duplicate",
    300: "json",
}


@pytest.mark.parametrize("kind", ["sql", "pandas"])
def test_poison_rows_of_every_sqlstate_are_isolated_and_the_rest_migrated(env, kind):
    schema.upgrade(env, "0001")
    placement = {**PLACEMENT, 101: "negative"}  # first row of batch 2
    if kind == "pandas":
        placement[200] = "nul"  # a NUL the transform emits: COPY itself refuses it
    poison.create(env.url, 300, placement)
    m = poison.MIGRATIONS[kind]

    result = engine.run(env.url, m, pinned())

    assert result.status == "finished", result.stop_reason
    assert result.rows_quarantined == len(placement) and result.rows_done == 300 - len(placement)
    assert result.retries == 0  # a refusal is searched, not retried
    # each refused row is found inside its batch, from how far the refused statement (or COPY) got
    assert batch_ranges(env, m.name) == [(0, 100), (100, 200), (200, 300)]
    set_aside = quarantined(env, m.name)
    assert set(set_aside) == set(placement)
    for key, what in placement.items():
        sqlstate = "22021" if what == "nul" else poison.POISON[what][1]
        assert set_aside[key]["reason"].startswith(f"the database refused the row: SQLSTATE {sqlstate} "), (
            key,
            set_aside[key]["reason"],
        )
        assert set_aside[key]["row"]["migrated"] is False and set_aside[key]["row"]["id"] == key
    rows = {r[0]: r for r in migrated_table(env)}
    for key, row in rows.items():
        if key in placement:  # untouched
            assert row[1:] == (None, None, None, None, None, False), row
        else:
            assert row[1:] == (12.5, '{"a": 1}', row[3], 25, f"c{key}", True) and str(row[3]) == "2026-01-02"


WORK_COUNTERS = """
CREATE SEQUENCE statements_run; CREATE SEQUENCE rows_run;
CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM nextval('statements_run'); RETURN NULL; END $$;
CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM nextval('rows_run'); RETURN NEW; END $$;
CREATE TRIGGER statements_run BEFORE UPDATE ON poison FOR EACH STATEMENT EXECUTE FUNCTION count_statement();
CREATE TRIGGER rows_run BEFORE UPDATE ON poison FOR EACH ROW EXECUTE FUNCTION count_row();
"""


def work_done(env) -> tuple[int, int]:
    """UPDATE statements run on the poison table and rows they reached, refused ones included (a sequence is not
    rolled back)."""
    last = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {}"
    return scalar(env, last.format("statements_run")), scalar(env, last.format("rows_run"))


def test_a_poison_row_costs_its_refused_attempt_and_a_few_single_rows(env):
    """A poison row in a 1,024-row batch: the refused statement's progress names it, so the batch costs its refused
    attempt and a few statements more, not log2(1,024) narrowed batches nor a row-by-row replay. The worker then
    runs its batches in pieces, so the next poison row wastes at most one piece."""
    schema.upgrade(env, "0001")
    poison.create(env.url, 2_048, {777: "overflow", 1_900: "zero"})
    with connect_checked(env) as conn:
        conn.execute(text(WORK_COUNTERS))
    result = engine.run(env.url, poison.SQL_POISON, pinned(1_024))
    assert result.status == "finished" and result.rows_quarantined == 2 and result.rows_done == 2_046
    assert batch_ranges(env, poison.SQL_POISON.name) == [(0, 1_024), (1_024, 2_048)]  # no narrowed batches
    reasons = {k: v["reason"] for k, v in quarantined(env, poison.SQL_POISON.name).items()}
    assert reasons[777].startswith("the database refused the row: SQLSTATE 22003 numeric field overflow")
    assert reasons[1_900].startswith("the database refused the row: SQLSTATE 22012 division by zero")
    statements, rows = work_done(env)
    # batch 1: refused (776 rows reached), row 777 alone (refused), (0, 776] and (777, 1024]; batch 2: 8 pieces
    # of 128 keys, the one of (1792, 1920] refused after 107 rows, row 1900 alone, the piece around it
    assert statements <= 4 + REFUSAL_PIECES + 3, statements
    assert rows <= 2_048 + 776 + 1_024 // REFUSAL_PIECES, rows  # every row once, plus the refused attempts'


def test_what_refused_statements_wrote_is_counted_as_the_runs_dead_tuples(env):
    """The throttle must count a refused statement's writes as this run's dead tuples (else it waits for vacuum on
    the run's own account): a batch reports them, and a batch given up to halving carries all it wrote."""
    schema.upgrade(env, "0001")
    poison.create(env.url, 1_024, {777: "overflow", 100: "clash", 200: "clash"})
    with create_engine(env.url).connect() as conn:
        with conn.begin():
            applied = apply_isolating(conn, poison.SQL_POISON, 300, 1_024)
        assert [k for k, _ in applied.refused] == [777] and applied.written == 723
        assert applied.wasted == 476  # (300, 776] went through before 777 was refused
        with pytest.raises(DBAPIError) as caught, conn.begin():
            apply_isolating(conn, poison.SQL_POISON, 0, 300)  # 100 and 200 clash: no row refused alone
        # (0, 200] reached (a unique index refuses a row after writing it), then 197..203 each tried alone
        assert caught.value.dead_tuples == 200 + 2 * CANDIDATE_SPREAD + 1


def test_the_worker_counts_every_tuple_its_statements_wrote_as_the_runs_own_dead(env):
    """A worker's throttle tells the run's own dead tuples from foreign ones (``health.decide``): each row version
    the run wrote is one, whether its statement committed, was refused, or tried a candidate alone. A worker that
    missed the refused writes would wait for vacuum on its own account. Here the table's UPDATEs are counted by a
    trigger as they happen (a sequence is not rolled back) while one worker runs: a row refused at 777 by its whole
    batch, one refused inside a piece at 1,900, and two rows clashing at 1,100 and 1,150 that take halving."""
    schema.upgrade(env, "0001")
    poison.create(env.url, 2_048, {777: "overflow", 1_100: "clash", 1_150: "clash", 1_900: "zero"})
    with connect_checked(env) as conn:
        conn.execute(text(WORK_COUNTERS))
    m, options = poison.SQL_POISON, pinned(1_024)
    with create_engine(env.url, poolclass=NullPool).connect() as conn, conn.begin():
        state.ensure_schema(conn)
        state.transition(conn, m.name, "running")
        assert plan_slices(conn, m, 1, options.slice_keys) == 1
    worker = Worker(create_engine(env.url, poolclass=NullPool), m, options, worker_id="test:0")
    assert worker.run(RunResult(m.name, "running")) is None
    assert set(quarantined(env, m.name)) == {777, 1_150, 1_900}
    assert (1_024, 1_280) in batch_ranges(env, m.name)  # the clash was halved around
    # these refusals come before the row trigger fires, so every row it counted was written
    _, rows_written = work_done(env)
    assert worker.throttle.own_dead == rows_written
    assert rows_written > 2_048 + 700  # the refused statements' writes are in it


def test_a_refusal_no_single_row_explains_is_found_by_halving(env):
    """Two rows of one batch clash on a unique column: alone, each goes through, so the engine narrows its batches
    around the refusal until the first row is written before the second is tried, which is then refused alone."""
    schema.upgrade(env, "0001")
    poison.create(env.url, 2_048, {300: "clash", 360: "clash"})
    result = engine.run(env.url, poison.SQL_POISON, pinned(1_024))
    assert result.status == "finished" and result.rows_quarantined == 1 and result.rows_done == 2_047
    set_aside = quarantined(env, poison.SQL_POISON.name)
    assert list(set_aside) == [360] and "SQLSTATE 23505" in set_aside[360]["reason"]
    ranges = batch_ranges(env, poison.SQL_POISON.name)
    # halved once: (0, 512] then ran in pieces (after a refusal), 300 in one and 360, refused alone, in the next
    assert ranges == [(0, 512), (512, 1_536), (1_536, 2_048)], ranges
    assert scalar(env, "SELECT count(*) FROM poison WHERE migrated AND code_u = 'clash'") == 1


def test_more_refused_rows_than_a_batch_sets_aside_in_place_are_found_by_halving(env):
    """A batch sets aside at most MAX_PINPOINTED_PER_BATCH rows under savepoints (more would overflow PostgreSQL's
    subtransaction cache); past that the engine halves its batches, and every refused row is still set aside."""
    schema.upgrade(env, "0001")
    bad = set(range(10, 10 + MAX_PINPOINTED_PER_BATCH + 6))
    poison.create(env.url, 300, dict.fromkeys(bad, "negative"))
    result = engine.run(env.url, dataclasses.replace(poison.SQL_POISON, max_quarantined=50), pinned())
    assert result.status == "finished" and result.rows_quarantined == len(bad)
    assert set(quarantined(env, poison.SQL_POISON.name)) == bad
    assert scalar(env, "SELECT count(*) FROM poison WHERE migrated") == 300 - len(bad)
    assert batch_ranges(env, poison.SQL_POISON.name)[0][1] < BATCH  # the first batch was halved


def test_errors_that_are_not_about_the_data_keep_failing_clearly(env):
    schema.upgrade(env, "0001")
    poison.create(env.url, 50, {})
    broken = poison.SQL_POISON.__class__(
        **{
            **poison.SQL_POISON.__dict__,
            "name": "common.poison_broken",
            "step": type(poison.SQL_POISON.step)(
                update_sql="UPDATE poison SET no_such_column = 1 WHERE id > :lo"
            ),
        }
    )
    with pytest.raises(DataMigrationFailed, match=r"after 1 attempt\(s\): column \"no_such_column\""):
        engine.run(env.url, broken, pinned())
    assert quarantined(env, broken.name) == {}


def test_the_bound_stops_a_run_that_sets_aside_too_much(env):
    schema.upgrade(env, "0001")
    poison.create(env.url, 300, {i: "negative" for i in range(120, 130)} | {250: "json"})
    strict = dataclasses.replace(poison.SQL_POISON, max_quarantined=4)
    with pytest.raises(DataMigrationFailed) as caught:
        engine.run(env.url, strict, pinned())
    message = str(caught.value)
    assert "10 rows quarantined, more than its declared max_quarantined allows (4 of 300)" in message
    assert "SQLSTATE 23514" in message and "\n" not in message
    # the batch that crossed the bound (its ten refused rows) was rolled back; the batch before it stays
    assert quarantined(env, strict.name) == {}
    assert scalar(env, "SELECT count(*) FROM poison WHERE migrated") == 100
    assert (
        scalar(
            env, "SELECT status FROM tradedb_migrations.data_migration_state WHERE name = :n", n=strict.name
        )
        == "failed"
    )

    # a share of the rows that still needed it (200 after the first run): 11 is within 7 %, so it finishes
    share = dataclasses.replace(poison.SQL_POISON, name="common.poison_share", max_quarantined=0.07)
    result = engine.run(env.url, share, pinned())
    assert result.status == "finished" and result.rows_quarantined == 11


@pytest.mark.parametrize(
    ("placement", "set_aside", "narrowest"),
    [
        # found inside the batch: the engine is killed while it tries a row alone
        ({40: "json", 41: "overflow", 77: "negative", 140: "zero"}, {40, 41, 77, 140}, 1),
        # two rows clash, so no row is refused alone: killed in the first halved batch (its pieces wait)
        ({40: "clash", 60: "clash", 140: "zero"}, {60, 140}, 2),
    ],
    ids=["pinpointing", "halving"],
)
def test_a_crash_during_a_search_resumes_to_the_same_result(make_database, placement, set_aside, narrowest):
    """SIGKILL while the engine searches for a refused row (held on an advisory lock in a statement over a range
    narrower than a batch, and at least ``narrowest`` keys wide), then resume."""
    reference, crashed = make_database(), make_database()
    gate = (
        "CREATE FUNCTION gate(lo bigint, hi bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        f"IF hi - lo < 100 AND hi - lo >= {narrowest} THEN PERFORM pg_advisory_xact_lock(4242); END IF; "
        "RETURN true; END $$"
    )
    for e in (reference, crashed):
        schema.upgrade(e, "0001")
        poison.create(e.url, 200, placement)
        with connect_checked(e) as conn:
            conn.execute(text(gate))
    gated = gated_migration()
    assert engine.run(reference.url, gated, pinned()).status == "finished"

    holder_engine = create_engine(
        crashed.url, poolclass=NullPool
    )  # closing it must end the session and its lock
    holder = holder_engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(4242)"))
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.data_migrations.test_poison_rows import run_gated; run_gated(sys.argv[2])"
    )
    url = crashed.url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), url], cwd=ROOT)
    try:
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted"
        deadline = time.monotonic() + 60
        while scalar(crashed, waiting) == 0:  # the engine is searching its first batch for a refused row
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the engine never searched for the refused row"
            )
            time.sleep(0.05)
        waiting_on = scalar(
            crashed, "SELECT query FROM pg_stat_activity WHERE query LIKE 'UPDATE poison%gate(%'"
        )
        lo, hi = map(int, re.search(r"gate\((\d+), (\d+)\)", waiting_on).groups())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        holder.close()
        holder_engine.dispose()
    # where it was: a row tried alone, or a piece of the first halved batch, (0, 50]
    assert hi - lo == 1 if narrowest == 1 else hi <= 50, (lo, hi)
    assert scalar(crashed, "SELECT count(*) FROM poison WHERE migrated") == 0  # the batch died with it
    result = engine.run(crashed.url, gated, pinned())
    assert result.status == "finished"
    assert migrated_table(crashed) == migrated_table(reference)
    assert quarantined(crashed, gated.name).keys() == quarantined(reference, gated.name).keys() == set_aside


def gated_migration():
    """The SQL step with a gate: a range narrower than a batch (a search's statement) waits on lock 4242."""
    update = poison.SQL_POISON.step.update_sql.replace("WHERE", "WHERE gate(:lo, :hi) AND", 1)
    return dataclasses.replace(poison.SQL_POISON, step=SqlStep(update_sql=update))


def run_gated(url: str) -> None:
    """Subprocess entry of the crash test: the gated SQL step, one 100-row batch at a time."""
    engine.run(url, gated_migration(), pinned(lock_timeout_ms=600_000))


# ------------------------------------------------------------------------------------------------ the app's data


LEGACY_PAYLOADS = [  # text payloads old producers wrote that Python reads but jsonb refuses
    '{"px": "nan", "sym": "AAA"}',
    '{"price": NaN, "symbol": "AAPL"}',
    '{"price": "Infinity", "symbol": "MSFT"}',
    '{"symbol": "AAPL", "note": "a\\u0000b"}',
    '{"symbol": "AAPL", "note": "\\ud800"}',
    '{"price": 1e400, "symbol": "AAPL"}',
]


def add_legacy_values(env) -> dict[str, list[int]]:
    """Rows the generator never makes: payloads jsonb refuses, a level too large for numeric(20, 8)."""
    with connect_checked(env) as conn:
        events = [
            conn.scalar(
                text(
                    "INSERT INTO events (occurred_at, event_type, source, payload_raw) "
                    "VALUES (now(), 'legacy.odd', 'bot-2019', :p) RETURNING id"
                ),
                {"p": raw},
            )
            for raw in LEGACY_PAYLOADS
        ]
        setup = conn.scalar(
            text(
                "INSERT INTO ticker_setups (setup_id, instrument_id, status, levels) SELECT setup_id, instrument_id, "
                "status, 'entry=12345678901234;stop=1' FROM ticker_setups LIMIT 1 RETURNING id"
            )
        )
    return {"events": events, "ticker_setups": [setup]}


def test_a_deploy_survives_legacy_values_and_check_is_clean(env, tmp_path):
    seeded(env, rows=2_000)
    added = add_legacy_values(env)
    result = run_cli("deploy", env=env, extra={"DAGSTER_HOME": str(tmp_path / "dagster")}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert schema.current_revision(env) == schema.head()
    events = quarantined(env, "events.normalise_event_payload")
    reasons = {key: events[key]["reason"] for key in added["events"]}
    assert reasons == {
        added["events"][0]: "price is not a finite number: 'nan'",
        added["events"][1]: "payload holds NaN, which JSON (and PostgreSQL's jsonb) does not allow",
        added["events"][2]: "price is not a finite number: 'Infinity'",
        added["events"][3]: "note holds a NUL character, which PostgreSQL text cannot store",
        added["events"][4]: "note holds an unpaired surrogate U+D800, which is not valid Unicode",
        added["events"][5]: "price is inf, which JSON does not allow",
    }
    setups = quarantined(env, "setups.parse_ticker_setup_levels")
    assert setups[added["ticker_setups"][0]]["reason"].startswith(
        "the database refused the row: SQLSTATE 22003 numeric field overflow"
    )
    check = run_cli("check", env=env)
    assert check.returncode == 0, check.stderr
    shown = run_cli("data", "quarantine", "setups.parse_ticker_setup_levels", "--json", env=env)
    assert "SQLSTATE 22003" in shown.stdout
    with connect_checked(env) as conn:
        for name in ("events.normalise_event_payload", "setups.parse_ticker_setup_levels"):
            assert quarantine_reconciled(conn, get(name)).passed
    with open(os.environ["TRADEDB_ALERT_LOG"]) as log:
        alerts = [json.loads(line) for line in log]
    counted = [a["title"] for a in alerts if a["kind"] == "quarantine"]
    assert any(f"quarantined {len(events)} row(s)" in t for t in counted), counted


def test_a_trade_whose_notional_overflows_is_quarantined_and_revert_gives_it_back(env):
    seeded(env, rows=500, to="0008")
    with connect_checked(env) as conn:
        big = conn.scalar(
            text("UPDATE trades SET price = 99999999999, quantity = 9999999 WHERE id = 7 RETURNING id")
        )
        before = dict(conn.execute(text("SELECT * FROM trades WHERE id = 7")).mappings().one())
    result = engine.run(env.url, "execution.backfill_trade_notional", pinned(200))
    assert result.status == "finished" and result.rows_quarantined == 1
    (reason,) = [q["reason"] for q in quarantined(env, "execution.backfill_trade_notional").values()]
    assert reason.startswith("the database refused the row: SQLSTATE 22003 numeric field overflow")
    assert "precision 24, scale 8" in reason
    assert scalar(env, "SELECT count(*) FROM trades WHERE notional IS NULL") == 1
    engine.revert(env.url, "execution.backfill_trade_notional")
    with connect_checked(env) as conn:
        after = dict(conn.execute(text("SELECT * FROM trades WHERE id = :i"), {"i": big}).mappings().one())
    assert after == before
