"""The staging rehearsal against a real PostgreSQL: deploy order, lock sampling, fingerprint, measurements, failures."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from tests.helpers import current, execute, scalar, seeded
from tradedb import rehearsal, schema
from tradedb.errors import TradeDBError
from tradedb.locks import LOCK_KEY, MigrationLocked
from tradedb.rehearsal import (
    LockSampler,
    RehearsalFailed,
    RehearsalReport,
    Step,
    StepMeasurement,
    deploy_order,
    deploy_priority,
    estimated_seconds,
    fingerprint,
    rehearse,
)
from tradedb.sample_data import FIRST_RELEASE
from tradedb.settings import Environment

HOLD_SECONDS = 0.3


def seeded_refresh(env: Environment, rows: int = 300, to: str | None = None):
    """A refresh for tests: seed staging at release 1.0 (optionally upgraded) instead of restoring a backup."""

    def refresh() -> str:
        seeded(env, rows=rows, to=to)
        return f"seeded with {rows} rows"

    return refresh


def names(steps) -> list[tuple[str, str]]:
    return [(s.kind, s.name) for s in steps]


# ------------------------------------------------------------------------------------------------ deploy order


def test_deploy_order_from_a_middle_revision():
    """Data migrations whose contract is still pending come first (in history order), the rest after their revision."""
    assert names(deploy_order("0010")) == [
        ("data", "execution.backfill_trade_notional"),
        ("data", "setups.parse_ticker_setup_levels"),
        ("schema", "0011"),
        ("data", "events.normalise_event_payload"),
        ("schema", "0012"),
        ("data", "discord.split_alert_types"),
        ("schema", "0013"),
        ("schema", "0014"),
        ("schema", "0015"),
        ("schema", "0016"),
        ("schema", "0017"),
    ]
    assert deploy_order(schema.head()) == []
    with pytest.raises(TradeDBError, match="not in this code's history"):
        deploy_order("9999")


def test_full_order_puts_each_data_migration_after_its_revision_and_before_its_contract():
    order = names(deploy_order(None))
    assert [n for k, n in order if k == "schema"] == [r.revision for r in schema.revisions()]
    for info in schema.revisions():
        for needed in info.requires_data:
            assert order.index(("data", needed)) < order.index(("schema", info.revision))
    assert order.index(("schema", "0008")) + 1 == order.index(("data", "execution.backfill_trade_notional"))
    priorities = [deploy_priority(k, n) for k, n in order]
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(priorities)


# ------------------------------------------------------------------------------------------------ fingerprint


def test_fingerprint_is_stable_and_changes_when_a_revision_file_changes(tmp_path, monkeypatch):
    before = fingerprint()
    assert before == fingerprint() and len(before) == rehearsal.FINGERPRINT_CHARS
    history = list(schema.revisions())
    copy = tmp_path / "0017.py"
    shutil.copy(rehearsal.project_root() / history[-1].path, copy)
    moved = [*history[:-1], replace(history[-1], path=str(copy))]  # an absolute path wins over the root
    monkeypatch.setattr(schema, "revisions", lambda: tuple(moved))
    assert fingerprint() == before  # same bytes, same fingerprint
    copy.write_text(copy.read_text() + "\n# reviewed again\n")
    assert fingerprint() != before


# ------------------------------------------------------------------------------------------------ lock sampler


def hold_lock(env: Environment, table: str, seconds: float) -> threading.Thread:
    """Another session holding ACCESS EXCLUSIVE on ``table`` for ``seconds`` (on a thread)."""

    def hold() -> None:
        engine = create_engine(env.url)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                time.sleep(seconds)
        finally:
            engine.dispose()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def test_lock_sampler_measures_a_held_access_exclusive_lock(make_database):
    target, other = make_database("staging"), make_database("dev")
    for env in (target, other):
        execute(env, "CREATE TABLE held (id int)")
    with LockSampler(target) as sampler:
        with sampler.step("quiet"):
            time.sleep(0.1)
        with sampler.step("alter"):
            hold_lock(target, "held", HOLD_SECONDS).join()
        with sampler.step("elsewhere"):  # a lock in another database is not this rehearsal's
            hold_lock(other, "held", HOLD_SECONDS).join()
    assert sampler.error is None and sampler.samples > 10
    ms, relation = sampler.longest("alter")
    assert relation == "held"
    assert HOLD_SECONDS * 1000 - 3 * rehearsal.SAMPLE_MS <= ms <= HOLD_SECONDS * 1000 + 50
    assert sampler.longest("quiet") == (0.0, None)
    assert sampler.longest("elsewhere") == (0.0, None)
    assert not sampler._thread.is_alive()


def test_lock_sampler_failure_never_breaks_the_caller():
    unreachable = Environment("staging", create_engine("postgresql+psycopg2://u@127.0.0.1:1/none").url, False)
    with LockSampler(unreachable) as sampler, sampler.step("x"):
        pass
    assert sampler.error and sampler.error.startswith("lock sampling stopped")
    assert sampler.longest("x") == (0.0, None)


def test_lock_text_is_honest_about_the_sampling_period():
    assert StepMeasurement("schema", "0008", "execution", 0.1).lock_text == "none seen"
    seen_once = StepMeasurement("schema", "0008", "execution", 0.1, 0.0, "trades")
    assert seen_once.lock_text == f"< {rehearsal.SAMPLE_MS} ms on trades"
    long = StepMeasurement("schema", "0013", "execution", 2.0, 1530.4, "trades")
    assert long.lock_text == "1,530 ms on trades"


# ------------------------------------------------------------------------------------------------ rehearse


def test_rehearsal_from_release_1_measures_every_step_and_survives_the_round_trip(make_database):
    staging = make_database("staging")
    seen: list[StepMeasurement] = []
    report = rehearse(staging, refresh=seeded_refresh(staging), on_step=seen.append)

    assert report.ok, report.summary()
    assert report.start_revision == FIRST_RELEASE and report.head == schema.head() == current(staging)
    assert report.source == "seeded with 300 rows" and report.fingerprint == fingerprint()
    assert names(report.steps) == names(deploy_order(FIRST_RELEASE)) == names(seen)
    assert all(s.seconds > 0 for s in report.steps)
    rows = {s.name: s.rows for s in report.steps if s.kind == "data"}
    assert rows["execution.backfill_trade_notional"] == 300 and all(r > 0 for r in rows.values())
    assert all(s.rows is None for s in report.steps if s.kind == "schema")
    assert report.lock_sampling.startswith(f"every {rehearsal.SAMPLE_MS} ms")
    assert report.table_rows["trades"] == 300

    check_names = {c.name for c in report.checks}
    assert {"foreign_key_orphans", "schema_matches_models", "revision_files_unchanged"} <= check_names
    assert "execution.backfill_trade_notional:notional_is_price_times_quantity" in check_names
    assert all(c.passed for c in report.checks)

    assert report.round_trip_ok and report.round_trip_differences == []
    assert report.downgrade_seconds > 0 and report.reupgrade_seconds > 0
    # contracts 0014-0016 rebuild their legacy columns in canonical form: compared, but allowed to differ
    assert set(report.round_trip_exempt) == {"ticker_setups", "events", "alert_subscriptions"}
    assert "trades" not in report.round_trip_exempt

    restored = RehearsalReport.from_json(json.loads(json.dumps(report.to_json())))
    assert restored.to_json() == report.to_json() and restored.ok
    assert estimated_seconds(restored, deploy_order(FIRST_RELEASE)) == pytest.approx(report.deploy_seconds)
    entry = scalar(staging, "SELECT outcome FROM tradedb_migrations.ledger WHERE kind = 'rehearsal'")
    assert entry == "success"


def test_a_failing_revision_stops_the_rehearsal_with_the_report_so_far(make_database):
    staging = make_database("staging")

    def refresh() -> str:
        seeded(staging, rows=100)
        execute(staging, "ALTER TABLE trades ADD COLUMN notional numeric")  # 0008 will collide with it
        return "seeded, with a column in the way"

    with pytest.raises(RehearsalFailed, match="failed at schema step 0008") as caught:
        rehearse(staging, refresh=refresh)
    report = caught.value.report
    assert names(report.steps) == [("schema", "0007")]
    assert report.error == str(caught.value) and not report.ok and report.finished_at is not None
    assert current(staging) == "0007"  # the failing revision rolled back on its own
    assert (
        scalar(staging, "SELECT outcome FROM tradedb_migrations.ledger WHERE kind = 'rehearsal'") == "failure"
    )


def test_a_failing_invariant_stops_before_the_contract_as_in_production(make_database):
    staging = make_database("staging")

    def refresh() -> str:
        seeded(staging, rows=100, to="0012")
        from data_migrations import engine

        engine.run(staging.url, "execution.backfill_trade_notional")
        execute(staging, "UPDATE trades SET notional = notional * 2 WHERE id IN (3, 4)")
        return "seeded at 0012 with two wrong notionals"

    with pytest.raises(
        RehearsalFailed, match="check failed after data migration execution.backfill"
    ) as caught:
        rehearse(staging, refresh=refresh)
    report = caught.value.report
    assert names(report.steps) == [("data", "execution.backfill_trade_notional")]
    failing = [c for c in report.checks if not c.passed]
    assert [c.name for c in failing] == ["execution.backfill_trade_notional:notional_is_price_times_quantity"]
    assert {row["id"] for row in failing[0].sample} == {3, 4}
    assert current(staging) == "0012"


def test_refuses_production_and_a_staging_someone_is_migrating(make_database):
    production = make_database("production")
    with pytest.raises(TradeDBError, match="refusing to rehearse on production"):
        rehearse(production, refresh=lambda: pytest.fail("must not refresh"))
    staging = make_database("staging")
    holder = create_engine(staging.url).connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
    holder.commit()
    try:
        with pytest.raises(MigrationLocked):
            rehearse(staging, refresh=lambda: pytest.fail("must not refresh under someone else's migration"))
    finally:
        holder.close()


def test_estimated_seconds_sums_rehearsed_steps_and_refuses_to_guess():
    report = RehearsalReport("f", "staging", "seeded", datetime.now(UTC), "0017")
    report.steps = [
        StepMeasurement("schema", "0016", "discord", 1.5),
        StepMeasurement("schema", "0017", "execution", 2.25),
        StepMeasurement("data", "discord.split_alert_types", "discord", 10.0, rows=60),
    ]
    pending = [Step("schema", "0016", "discord"), Step("schema", "0017", "execution")]
    assert estimated_seconds(report, pending) == pytest.approx(3.75)
    assert estimated_seconds(report, []) == 0
    assert estimated_seconds(report, [*pending, Step("schema", "0015", "events")]) is None


def test_default_refresh_restores_a_production_backup(make_database, monkeypatch, tmp_path):
    """No production backup yet: the rehearsal takes one, restores it into staging (verified), and rehearses it."""
    production, staging = make_database("production"), make_database("staging")
    seeded(production, rows=200)
    monkeypatch.setenv("TRADEDB_PRODUCTION_URL", production.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRADEDB_BACKUP_DIR", str(tmp_path / "backups"))
    from tradedb import backup

    assert backup.latest_backup(production) is None
    report = rehearse(staging)
    taken = backup.latest_backup(production)
    assert taken is not None and report.source.startswith(
        f"fresh backup {taken.id} (production at revision 0006"
    )
    assert report.ok, report.summary()
    assert report.start_revision == FIRST_RELEASE and report.table_rows["trades"] == 200
    assert current(production) == FIRST_RELEASE  # production itself was only read
    assert current(staging) == schema.head()
