"""Run reports from a known ledger history in a real database: exact numbers, --since, the chart, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import run_cli
from tests.helpers import ledger_entry
from tradedb.cli.base import parse_time
from tradedb.core.db import connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.ops import report
from tradedb.ops.report.chart import REPORTS_DIR_VARIABLE
from tradedb.schema import ledger

BACKFILL = "execution.backfill_trade_notional"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)

# (kind, name, direction, start offset, seconds, outcome, size before, size after)
HISTORY = [
    ("schema", "0001", "upgrade", timedelta(0), 2.0, "success", 1000, 2000),
    ("schema", "0002", "upgrade", timedelta(minutes=1), 4.0, "success", 2000, 3000),
    ("data", BACKFILL, "run", timedelta(minutes=2), 10.0, "failure", 3000, 3000),
    ("data", BACKFILL, "run", timedelta(days=1), 30.0, "success", 3000, 5000),
    # ---- the last five days (--since 5d) start here
    ("schema", "0002", "downgrade", timedelta(days=8), 1.0, "success", 5000, 4500),
    ("schema", "0002", "upgrade", timedelta(days=9), 6.0, "failure", 4500, 4500),
    ("schema", "0001", "stamp", timedelta(days=9, hours=1), 0.5, "success", None, None),
    ("data", BACKFILL, "revert", timedelta(days=9, hours=2), 3.0, "stopped", 4500, 4400),
    ("backup", "pre-deploy", "backup", timedelta(days=9, hours=3), 20.0, "success", None, None),
    ("override", "window", "override", timedelta(days=9, hours=4), 0.0, "success", None, None),
]


def record_history(env) -> None:
    with connect_checked(env) as conn:
        for kind, name, direction, offset, seconds, outcome, before, after in HISTORY:
            started = BASE + offset
            ledger.record(
                conn,
                ledger_entry(
                    kind,
                    name,
                    direction=direction,
                    started_at=started,
                    seconds=seconds,
                    outcome=outcome,
                    error="boom" if outcome == "failure" else None,
                    db_size_before=before,
                    db_size_after=after,
                ),
            )
        # another environment's entry in the same ledger (a restored copy) is not this environment's history
        ledger.record(
            conn,
            ledger_entry(
                "schema",
                "0003",
                environment="production",
                launched_by="dagster:r1",
                started_at=BASE,
                seconds=99,
                outcome="failure",
                db_size_after=1,
            ),
        )


@pytest.fixture
def history(env):
    record_history(env)
    return env


def test_report_numbers_are_exact(history):
    r = report.collect(history, slowest=3)
    assert r.environment == "dev" and r.entries == len(HISTORY)
    assert (r.by_kind["schema"].total, r.by_kind["schema"].successes, r.by_kind["schema"].failures) == (
        5,
        4,
        1,
    )
    assert r.by_kind["schema"].success_rate == pytest.approx(0.8)
    data = r.by_kind["data"]
    assert (data.total, data.successes, data.failures, data.stopped) == (3, 1, 1, 1)
    assert data.success_rate == pytest.approx(0.5)  # stopped counts in neither
    assert list(r.by_kind) == ["schema", "data", "backup", "override"]
    # overall leaves the override (a decision, not a run) out
    assert (r.overall.total, r.overall.successes, r.overall.failures, r.overall.stopped) == (9, 6, 2, 1)
    assert r.overall.success_rate == pytest.approx(0.75)

    steps = {(s.kind, s.name, s.direction): s for s in r.steps}
    assert len(steps) == 6
    upgrade_0002 = steps[("schema", "0002", "upgrade")]
    assert (upgrade_0002.count, upgrade_0002.failures, upgrade_0002.last_outcome) == (2, 1, "failure")
    assert (upgrade_0002.mean_s, upgrade_0002.max_s, upgrade_0002.last_s) == (5.0, 6.0, 6.0)
    backfill = steps[("data", BACKFILL, "run")]
    assert (backfill.count, backfill.mean_s, backfill.last_s, backfill.last_outcome) == (
        2,
        20.0,
        30.0,
        "success",
    )
    assert steps[("data", BACKFILL, "revert")].label == f"{BACKFILL} revert"

    # the backup's 20 s is not a step
    assert [(s.name, s.duration_s, s.outcome) for s in r.slowest] == [
        (BACKFILL, 30.0, "success"),
        (BACKFILL, 10.0, "failure"),
        ("0002", 6.0, "failure"),
    ]
    assert [p.bytes for p in r.sizes] == [2000, 3000, 3000, 5000, 4500, 4500, 4400]
    assert (r.size_start, r.size_end, r.size_change) == (1000, 4400, 3400)
    assert (r.downgrades, r.stamps, r.reverts) == (1, 1, 1)
    assert [f["name"] for f in r.failures] == [BACKFILL, "0002"]

    assert report.metrics(r) == {
        "total_runs": 9,
        "successes": 6,
        "failures": 2,
        "downgrades": 1,
        "stamps": 1,
        "success_rate": pytest.approx(0.75),
        "schema_success_rate": pytest.approx(0.8),
        "data_success_rate": pytest.approx(0.5),
        "db_size_bytes": 4400,
        "db_size_change_bytes": 3400,
        "slowest_step_s": 30.0,
        "mean_step_s": pytest.approx((2 + 4 + 10 + 30 + 1 + 6 + 0.5 + 3) / 8),
        # per step label, in first-seen order: the last duration and the longest
        "duration_s/0001": 2.0,
        "max_duration_s/0001": 2.0,
        "duration_s/0002": 6.0,
        "max_duration_s/0002": 6.0,
        f"duration_s/{BACKFILL}": 30.0,
        f"max_duration_s/{BACKFILL}": 30.0,
        "duration_s/0002 downgrade": 1.0,
        "max_duration_s/0002 downgrade": 1.0,
        "duration_s/0001 stamp": 0.5,
        "max_duration_s/0001 stamp": 0.5,
        f"duration_s/{BACKFILL} revert": 3.0,
        f"max_duration_s/{BACKFILL} revert": 3.0,
    }
    assert list(report.metrics(r))[12:16] == [
        "duration_s/0001",
        "max_duration_s/0001",
        "duration_s/0002",
        "max_duration_s/0002",
    ]
    t0, t1, t5 = (f"{BASE + HISTORY[i][3]:%Y-%m-%d %H:%M}" for i in (3, 2, 5))
    assert report.slowest_markdown(r) == "\n".join(
        [
            "| step | kind | started (UTC) | seconds | outcome | launched by |",
            "|---|---|---|--:|---|---|",
            f"| {BACKFILL} | data | {t0} | 30.00 | success | cli:test@host |",
            f"| {BACKFILL} | data | {t1} | 10.00 | failure | cli:test@host |",
            f"| 0002 | schema | {t5} | 6.00 | failure | cli:test@host |",
        ]
    )
    assert json.loads(json.dumps(r.to_json()))["overall"]["success_rate"] == pytest.approx(0.75)


def test_since_keeps_only_the_period(history):
    r = report.collect(history, since=parse_time("5d", option="--since", ago=True))
    assert r.entries == 6
    assert (r.overall.total, r.overall.successes, r.overall.failures, r.overall.stopped) == (5, 3, 1, 1)
    assert r.by_kind["data"].success_rate is None  # only a stopped revert: nothing to rate
    assert (r.size_start, r.size_end, r.size_change) == (5000, 4400, -600)
    recent = report.metrics(r)
    assert "data_success_rate" not in recent
    # per-step keys only for steps run in the period; 0002's last upgrade (6 s) was its only one since
    assert {k: v for k, v in recent.items() if "duration_s/" in k} == {
        "duration_s/0002 downgrade": 1.0,
        "max_duration_s/0002 downgrade": 1.0,
        "duration_s/0002": 6.0,
        "max_duration_s/0002": 6.0,
        "duration_s/0001 stamp": 0.5,
        "max_duration_s/0001 stamp": 0.5,
        f"duration_s/{BACKFILL} revert": 3.0,
        f"max_duration_s/{BACKFILL} revert": 3.0,
    }
    iso = (BASE + timedelta(days=9)).isoformat()
    assert report.collect(history, since=datetime.fromisoformat(iso)).entries == 5


def test_parse_time_accepts_durations_and_iso():
    now = datetime.now(UTC)
    assert abs(parse_time("7d", option="--since", ago=True) - (now - timedelta(days=7))) < timedelta(
        seconds=5
    )
    assert abs(parse_time("30m", option="--deadline") - (now + timedelta(minutes=30))) < timedelta(seconds=5)
    assert parse_time("2026-11-28T06:00", option="--since") == datetime(2026, 11, 28, 6, tzinfo=UTC)
    assert parse_time(None, option="--since") is None
    with pytest.raises(TradeDBError, match=r"malformed --since 'last week'"):
        parse_time("last week", option="--since", ago=True)


def test_chart_is_a_png(history, tmp_path):
    r = report.collect(history)
    path = report.write_chart(r, tmp_path / "sub" / "chart.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < len(data) < 2_000_000
    assert report.default_chart_path(r).parent.name == "reports"
    assert report.default_chart_path(r).name.startswith("dev_")
    assert report.latest_chart_path("dev") == report.reports_dir() / "dev_latest.png"
    assert [p.name for p in path.parent.iterdir()] == ["chart.png"]  # no temporary file left beside it


def _row(
    name: str, minutes: int, seconds: float, *, kind: str = "schema", direction: str = "upgrade"
) -> dict:
    started = BASE + timedelta(minutes=minutes)
    return {
        "id": minutes,
        "kind": kind,
        "name": name,
        "direction": direction,
        "environment": "dev",
        "launched_by": "cli:test@host",
        "started_at": started,
        "finished_at": started + timedelta(seconds=seconds),
        "duration_s": seconds,
        "outcome": "success",
        "db_size_before": None,
        "db_size_after": None,
        "error": None,
    }


def test_per_step_metrics_are_last_and_max_for_the_most_recent_labels():
    labels = report.MAX_METADATA_STEPS + 5
    # step i runs at minute i, then step 0 runs again last (shorter), so it is among the most recent
    rows = [_row(f"{i:04d}", i, float(i + 1)) for i in range(labels)] + [_row("0000", labels, 0.25)]
    rows.append(_row("common.fill", labels + 1, 7.0, kind="data", direction="run"))
    m = report.metrics(report.build(rows, environment="dev"))
    durations = [k for k in m if k.startswith("duration_s/")]
    assert len(durations) == report.MAX_METADATA_STEPS
    assert len([k for k in m if k.startswith("max_duration_s/")]) == report.MAX_METADATA_STEPS
    assert (m["duration_s/0000"], m["max_duration_s/0000"]) == (0.25, 1.0)  # last run, longest run
    assert m["duration_s/common.fill"] == 7.0
    # kept: 0000, common.fill and the 38 most recent others (0007..0044); dropped: 0001..0006
    kept = [f"{i:04d}" for i in range(7, labels)]
    assert durations == ["duration_s/0000"] + [f"duration_s/{n}" for n in kept] + ["duration_s/common.fill"]
    assert report.slowest_markdown(report.build([])) is None
    odd = _row("0001", 0, 1.0) | {"launched_by": "cli:a|b\nc"}  # a pipe or newline cannot break the table
    assert report.slowest_markdown(report.build([odd])).splitlines()[2].endswith("| cli:a\\|b c |")


def test_cli_report_json_and_table(history, tmp_path):
    out = tmp_path / "r.png"
    result = run_cli("report", "--json", "--out", str(out), env=history)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["metrics"]["success_rate"] == pytest.approx(0.75)
    assert data["size_change"] == 3400 and data["chart"] == str(out) and out.stat().st_size > 20_000

    recent = run_cli("report", "--since", "5d", "--no-chart", env=history, extra={"COLUMNS": "160"})
    assert recent.returncode == 0, recent.stderr
    assert "6 entries" in recent.stdout and "75.0%" in recent.stdout and "chart:" not in recent.stdout
    assert "over the period" in recent.stdout and "downgrades: 1" in recent.stdout

    bad = run_cli("report", "--since", "last week", env=history)
    assert bad.returncode == 1 and bad.stderr.startswith("error: malformed --since 'last week'")


def test_empty_ledger_says_so_and_draws_nothing(env, tmp_path):
    out = tmp_path / "none.png"
    result = run_cli("report", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "no ledger entries in this period: nothing to report" in result.stdout
    assert not out.exists() and "chart:" not in result.stdout
    assert report.collect(env).empty
    assert report.metrics(report.collect(env)) == {
        "total_runs": 0,
        "successes": 0,
        "failures": 0,
        "downgrades": 0,
        "stamps": 0,
    }


def test_monitoring_asset_plots_steps_and_keeps_one_chart(history, tmp_path, monkeypatch):
    import dagster as dg

    from orchestration.monitoring.assets import report_asset

    monkeypatch.setenv("TRADEDB_DEV_URL", history.url.render_as_string(hide_password=False))
    monkeypatch.setenv(REPORTS_DIR_VARIABLE, str(tmp_path / "reports"))
    asset = report_asset("dev")

    def materialise() -> dict:
        result = dg.materialize([asset])
        assert result.success
        [event] = result.get_asset_materialization_events()
        return event.materialization.metadata

    first = materialise()
    chart = tmp_path / "reports" / "dev_latest.png"
    assert first["chart"].value == str(chart)
    inode = chart.stat().st_ino
    assert first["duration_s/0002"].value == 6.0 and first[f"max_duration_s/{BACKFILL}"].value == 30.0
    assert first["success_rate"].value == pytest.approx(0.75)
    assert isinstance(first["slowest_steps"], dg.MarkdownMetadataValue)
    assert first["slowest_steps"].value.splitlines()[2].startswith(f"| {BACKFILL} | data |")

    with connect_checked(history) as conn:  # a new run between two ticks shows up as a new point
        ledger.record(
            conn,
            ledger_entry(
                "schema",
                "0003",
                launched_by="dagster:r2",
                started_at=BASE + timedelta(days=9, hours=5),
                seconds=8,
            ),
        )
    second = materialise()
    assert second["duration_s/0003"].value == 8.0 and second["total_runs"].value == 10
    assert second["chart"].value == str(chart)
    assert [p.name for p in chart.parent.iterdir()] == ["dev_latest.png"]  # one file, however many ticks
    assert chart.stat().st_ino != inode and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # replaced whole
