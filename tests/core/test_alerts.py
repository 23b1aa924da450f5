"""Alerts reach a real local webhook once, in a body Discord and Slack both accept, and never break the caller.

The webhook is a real HTTP server on 127.0.0.1 in a thread; "down" is a closed port; "broken" answers 500; "slow"
answers after the timeout. No alert may carry a password, in the webhook body or in the log.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tradedb.core import alerts
from tradedb.core.errors import TradeDBError
from tradedb.core.scrub import scrub
from tradedb.core.settings import load_config

DISCORD_KEYS = {"content", "text", "username", "allowed_mentions"}


class Webhook:
    """A local webhook that records every POST and answers with ``status`` after ``delay`` seconds."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.raw: list[bytes] = []
        self.headers: list[dict] = []
        self.status = 204  # what Discord answers without ?wait=true
        self.delay = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.raw.append(body)
                hook.headers.append(dict(self.headers))
                hook.posts.append(json.loads(body))
                time.sleep(hook.delay)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/123/SECRET-TOKEN"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert_log(tmp_path, monkeypatch) -> Path:
    """An isolated alert log and config file; no webhook variables from the outer environment."""
    for name in list(__import__("os").environ):
        if name.endswith("_ALERT_WEBHOOK") or name in ("TRADEDB_ALERT_LOG", "PGPASSWORD"):
            monkeypatch.delenv(name)
    path = tmp_path / "alerts.log"
    monkeypatch.setenv("TRADEDB_ALERT_LOG", str(path))
    config = tmp_path / "tradedb.toml"
    config.write_text("")
    monkeypatch.setenv("TRADEDB_CONFIG", str(config))
    return path


@pytest.fixture
def webhook(alert_log, monkeypatch) -> Webhook:
    hook = Webhook()
    monkeypatch.setenv("TRADEDB_PRODUCTION_ALERT_WEBHOOK", hook.url)
    yield hook
    hook.close()


def logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_kind_reaches_the_webhook_once_in_a_body_discord_and_slack_accept(webhook, alert_log):
    for kind in (*alerts.KINDS, "something_new"):
        alerts.send(
            "production", kind, f"{kind} on production", "what happened", {"run_id": "r-1", "seconds": 12.5}
        )
    assert len(webhook.posts) == len(alerts.KINDS) + 1
    for kind, body, headers in zip(
        (*alerts.KINDS, "something_new"), webhook.posts, webhook.headers, strict=True
    ):
        # Discord needs `content`, Slack and Discord's /slack endpoint need `text`; nothing else that either rejects
        assert set(body) == DISCORD_KEYS
        assert body["content"] == body["text"] and body["content"].strip()
        assert len(body["content"].encode("utf-16-le")) // 2 <= alerts.DISCORD_CONTENT_LIMIT
        assert body["username"] == "tradedb" and "discord" not in body["username"].lower()
        assert body["allowed_mentions"] == {"parse": []}
        assert f"[production] {kind}: {kind} on production" in body["content"]
        assert "what happened" in body["content"] and "run_id: r-1" in body["content"]
        assert headers["Content-Type"] == "application/json"
        assert "Python-urllib" not in headers["User-Agent"]
    records = logged(alert_log)
    assert [r["kind"] for r in records] == [*alerts.KINDS, "something_new"]
    assert {r["delivery"] for r in records} == {"sent"}
    first = records[0]
    assert set(first) == {"time", "environment", "kind", "severity", "title", "detail", "fields", "delivery"}
    assert first["severity"] == "error" and first["fields"] == {"run_id": "r-1", "seconds": 12.5}
    assert records[-1]["severity"] == alerts.DEFAULT_SEVERITY
    assert alerts.recent(3) == records[-3:]


def test_the_same_alert_within_the_window_is_posted_once(webhook, alert_log):
    alerts.send("production", alerts.LONG_RUNNING, "deploy_production running for 45 min")
    alerts.send("production", alerts.LONG_RUNNING, "deploy_production running for 45 min")
    assert len(webhook.posts) == 1
    assert [r["delivery"] for r in logged(alert_log)] == ["sent", "suppressed"]
    # another title, another kind or another environment is another alert
    alerts.send("production", alerts.LONG_RUNNING, "verify_production running for 45 min")
    alerts.send("production", alerts.RUN_FAILED, "deploy_production running for 45 min")
    alerts.send("staging", alerts.LONG_RUNNING, "deploy_production running for 45 min")  # no staging webhook
    assert len(webhook.posts) == 3
    assert logged(alert_log)[-1]["delivery"] == "none"


def test_an_alert_older_than_the_window_is_posted_again(webhook, alert_log):
    old = alerts.build("production", alerts.DRIFT, "schema drift on production")
    old["time"] = (datetime.now(UTC) - timedelta(seconds=alerts.DEFAULT_DEDUP_SECONDS + 5)).isoformat()
    old["delivery"] = "sent"
    alert_log.write_text(json.dumps(old) + "\n")
    alerts.send("production", alerts.DRIFT, "schema drift on production")
    assert len(webhook.posts) == 1


def test_dedup_window_is_configurable(webhook, alert_log, tmp_path):
    (tmp_path / "tradedb.toml").write_text("[alerts]\ndedup_seconds = 0\n")
    alerts.send("production", alerts.STAMP, "stamped 0013")
    alerts.send("production", alerts.STAMP, "stamped 0013")
    assert len(webhook.posts) == 2


def test_a_webhook_answering_500_is_retried_once_logged_and_does_not_start_a_window(
    webhook, alert_log, caplog
):
    webhook.status = 500
    with caplog.at_level(logging.WARNING, logger="tradedb.alerts"):
        alerts.send("production", alerts.RUN_FAILED, "deploy_production failed", "boom")
    assert len(webhook.posts) == 2  # one retry
    (record,) = logged(alert_log)
    assert record["delivery"].startswith("failed: HTTP 500") and record["detail"] == "boom"
    assert "127.0.0.1" in caplog.text and "SECRET-TOKEN" not in caplog.text
    # the failed delivery did not open a dedup window: the next identical alert is posted
    webhook.status = 204
    alerts.send("production", alerts.RUN_FAILED, "deploy_production failed", "boom")
    assert len(webhook.posts) == 3 and logged(alert_log)[-1]["delivery"] == "sent"


def test_a_webhook_answering_400_is_not_retried(webhook, alert_log):
    webhook.status = 400
    alerts.send("production", alerts.QUARANTINE, "12 rows quarantined")
    assert len(webhook.posts) == 1
    assert logged(alert_log)[0]["delivery"].startswith("failed: HTTP 400")


def test_a_webhook_that_is_down_does_not_raise_and_the_alert_is_logged(alert_log, monkeypatch, caplog):
    url = f"http://hookuser:HookPw66@127.0.0.1:{closed_port()}/api/webhooks/1/SECRET-TOKEN"
    monkeypatch.setenv("TRADEDB_PRODUCTION_ALERT_WEBHOOK", url)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tradedb.alerts"):
        assert alerts.send("production", alerts.BACKUP_FAILED, "pg_dump failed") is None
    assert time.monotonic() - started < 2 * alerts.WEBHOOK_TIMEOUT_S + 1
    (record,) = logged(alert_log)
    assert record["kind"] == "backup_failed" and record["delivery"].startswith("failed:")
    seen = caplog.text + alert_log.read_text()
    assert "HookPw66" not in seen and "SECRET-TOKEN" not in seen


def test_a_slow_webhook_times_out_without_raising(webhook, alert_log, monkeypatch):
    monkeypatch.setattr(alerts, "WEBHOOK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(alerts, "RETRY_PAUSE_S", 0.0)
    webhook.delay = 1.0
    started = time.monotonic()
    alerts.send("production", alerts.LONG_RUNNING, "slow webhook")
    assert time.monotonic() - started < 1.5
    (record,) = logged(alert_log)
    assert record["delivery"].startswith("failed:") and "timed out" in record["delivery"]


def test_no_password_reaches_the_webhook_or_the_log(webhook, alert_log, monkeypatch):
    monkeypatch.setenv("TRADEDB_PRODUCTION_URL", "postgresql://migrator:EnvOnlyPw55@db.internal:5432/trading")
    monkeypatch.setenv("PGPASSWORD", "PgEnvPw44")
    secrets = [
        "Sup3rS3cret",
        "TitlePw99",
        "FieldPw77",
        "plainpw1",
        "EnvOnlyPw55",
        "PgEnvPw44",
        "KeywordPw33",
        "p@ssAt",
    ]
    alerts.send(
        "production",
        alerts.RUN_FAILED,
        "cannot reach postgresql+psycopg2://u:TitlePw99@h/d",
        "could not connect to postgresql://migrator:Sup3rS3cret@db.internal:5432/trading\n"
        "driver said: connection to db.internal failed for password EnvOnlyPw55 and PgEnvPw44\n"
        "dsn: host=db user=migrator password=KeywordPw33\n"
        "raw @: postgresql://bob:p@ssAt@db/x",
        {"url": "postgresql://x:FieldPw77@h/d", "password": "plainpw1", "nested": ["https://a:FieldPw77@b/"]},
    )
    body = webhook.raw[0].decode()
    text = alert_log.read_text()
    for secret in secrets:
        assert secret not in body, secret
        assert secret not in text, secret
    assert "postgresql://migrator:***@db.internal:5432/trading" in body  # still useful to read


@pytest.mark.parametrize(
    ("raw", "scrubbed"),
    [
        ("postgresql://bob:s3cr%40t@db:5432/x failed", "postgresql://bob:***@db:5432/x failed"),
        ("postgresql+psycopg2://:pw@h/d", "postgresql+psycopg2://:***@h/d"),
        ("host=db password=hunter2 user=x", "host=db password=*** user=x"),
        ("see postgresql://u@h:5432/db", "see postgresql://u@h:5432/db"),  # no password: unchanged
        ("http://host:8080/path", "http://host:8080/path"),
        ("a https://u:p@h/ and https://v:q@k/", "a https://u:***@h/ and https://v:***@k/"),
    ],
)
def test_scrub(raw, scrubbed, alert_log):
    assert scrub(raw) == scrubbed


def test_long_messages_are_cut_to_discords_limit(webhook):
    alerts.send("production", alerts.RUN_FAILED, "long", "🙂" * 3000)  # 2 UTF-16 units each
    content = webhook.posts[0]["content"]
    assert len(content.encode("utf-16-le")) // 2 <= alerts.DISCORD_CONTENT_LIMIT
    assert content.endswith("(truncated)")


def test_bad_webhook_config_is_a_clear_error(alert_log, tmp_path, monkeypatch):
    config = tmp_path / "tradedb.toml"
    config.write_text("[environments.production]\nalert_webhook = 42\n")
    with pytest.raises(TradeDBError, match=r"\[environments.production\] alert_webhook must be a string"):
        load_config()
    config.write_text('[environments.production]\nalert_webhook = "ftp://hooks.example.com/x"\n')
    with pytest.raises(TradeDBError, match=r"alert_webhook must be an http\(s\) URL"):
        load_config()
    config.write_text("[alerts]\ndedup_seconds = -1\n")
    with pytest.raises(TradeDBError, match="dedup_seconds"):
        load_config()
    # the CLI says so in one line (any command reading the config)
    config.write_text('[environments.production]\nalert_webhook = "hooks.example.com/x"\n')
    result = run_cli("alerts", "--test", "--env", "production", extra={"TRADEDB_CONFIG": str(config)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: config file {config} [environments.production] alert_webhook must be an http(s) URL such as "
        "https://discord.com/api/webhooks/..."
    ]
    # a malformed variable: send() still does not raise, and the alert is in the log
    config.write_text("")
    monkeypatch.setenv("TRADEDB_STAGING_ALERT_WEBHOOK", "not a url")
    with pytest.raises(TradeDBError, match="TRADEDB_STAGING_ALERT_WEBHOOK must be an http"):
        alerts.webhook_url("staging")
    alerts.send("staging", alerts.DRIFT, "drift on staging")
    (record,) = logged(alert_log)
    assert record["delivery"].startswith("failed: TRADEDB_STAGING_ALERT_WEBHOOK")


def test_send_survives_an_unwritable_log(webhook, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TRADEDB_ALERT_LOG", str(tmp_path))  # a directory: cannot be appended to
    with caplog.at_level(logging.WARNING, logger="tradedb.alerts"):
        alerts.send("production", alerts.RUN_FAILED, "still posted")
    assert len(webhook.posts) == 1
    assert "could not raise the run_failed alert" in caplog.text


def test_recent_skips_damaged_lines(alert_log):
    alerts.send("dev", alerts.DRIFT, "one")
    with alert_log.open("a") as handle:
        handle.write('{"time": "cut by a cra\n')
    alerts.send("dev", alerts.DRIFT, "two")
    assert [r["title"] for r in alerts.recent(10)] == ["one", "two"]
    assert [r["title"] for r in alerts.recent(1)] == ["two"]
    assert alerts.recent(10, environment="production") == []


def test_cli_lists_alerts_and_sends_a_test(webhook, alert_log):
    alerts.send("production", alerts.DOWNGRADE, "downgraded 0017 -> 0016")
    extra = {
        "TRADEDB_ALERT_LOG": str(alert_log),
        "TRADEDB_CONFIG": str(alert_log.parent / "tradedb.toml"),
        "TRADEDB_PRODUCTION_ALERT_WEBHOOK": webhook.url,
        "COLUMNS": "200",
    }
    listed = run_cli("alerts", "--json", extra=extra)
    assert listed.returncode == 0, listed.stderr
    assert [r["title"] for r in json.loads(listed.stdout)] == ["downgraded 0017 -> 0016"]
    table = run_cli("alerts", extra=extra)
    assert "downgraded 0017 -> 0016" in table.stdout and "sent" in table.stdout

    tested = run_cli("alerts", "--test", "--env", "production", extra=extra)
    assert tested.returncode == 0, tested.stderr
    assert "test alert delivered" in tested.stdout and "SECRET-TOKEN" not in tested.stdout
    assert webhook.posts[-1]["content"].startswith("🔵 [production] test:")
    none = run_cli("alerts", "--test", "--env", "staging", extra=extra)
    assert none.returncode == 1 and "no alert webhook for staging" in none.stderr


# ------------------------------------------------------------------------------------------------ rotation


def rotated(path: Path) -> list[Path]:
    """The log's files, oldest first."""
    return sorted(path.parent.glob(path.name + ".*[0-9]"), key=lambda p: -int(p.suffix[1:])) + [path]


def test_the_log_rotates_by_size_keeps_n_files_and_is_read_across_them(webhook, alert_log, tmp_path):
    (tmp_path / "tradedb.toml").write_text("[alerts]\nmax_bytes = 2000\nbackups = 3\n")
    for n in range(60):
        alerts.send("dev", alerts.DRIFT, f"drift number {n}")
    files = rotated(alert_log)
    assert [p.name for p in files] == ["alerts.log.3", "alerts.log.2", "alerts.log.1", "alerts.log"]
    assert all(p.stat().st_size <= 2000 for p in files)
    kept = [r["title"] for p in files for r in logged(p)]
    assert kept == [f"drift number {n}" for n in range(60 - len(kept), 60)]  # the oldest fell off, in order
    assert 10 < len(kept) < 60
    # `recent` and `tradedb alerts` read across the rotation
    assert [r["title"] for r in alerts.recent(len(kept))] == kept
    assert len(logged(alert_log)) < len(kept)
    listed = run_cli(
        "alerts",
        "--json",
        "--limit",
        str(len(kept)),
        extra={"TRADEDB_ALERT_LOG": str(alert_log), "TRADEDB_CONFIG": str(tmp_path / "tradedb.toml")},
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["title"] for r in json.loads(listed.stdout)] == kept

    # the dedup lookback too: the file rotates right after an alert, and the same alert is still suppressed
    (tmp_path / "tradedb.toml").write_text("[alerts]\nmax_bytes = 600\nbackups = 3\n")
    alerts.send("production", alerts.DRIFT, "schema drift on production", "x" * 300)
    alerts.send("production", alerts.DRIFT, "schema drift on production", "x" * 300)
    assert len(webhook.posts) == 1
    assert [r["delivery"] for r in alerts.recent(2)] == ["sent", "suppressed"]
    assert logged(alert_log)[-1]["delivery"] == "suppressed" and len(logged(alert_log)) == 1  # it rotated


WRITER = """
import sys
from tradedb.core import alerts
for n in range(int(sys.argv[2])):
    alerts.send("dev", alerts.DRIFT, f"writer {sys.argv[1]} alert {n}", "d" * 40)
"""


def test_several_processes_write_one_rotating_log_without_losing_or_breaking_a_line(alert_log, tmp_path):
    import subprocess
    import sys

    (tmp_path / "tradedb.toml").write_text("[alerts]\nmax_bytes = 3000\nbackups = 200\n")
    writers, each = 4, 60
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(w), str(each)], cwd=Path(__file__).parents[2])
        for w in range(writers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    files = rotated(alert_log)
    assert len(files) > 10  # it rotated many times while four processes wrote
    lines = [line for p in files for line in p.read_text().splitlines()]
    records = [json.loads(line) for line in lines]  # every line whole
    titles = [r["title"] for r in records]
    assert sorted(titles) == sorted(f"writer {w} alert {n}" for w in range(writers) for n in range(each))
    for w in range(writers):  # each writer's alerts in the order it wrote them
        mine = [t for t in titles if t.startswith(f"writer {w} ")]
        assert mine == [f"writer {w} alert {n}" for n in range(each)]
    assert all(p.stat().st_size <= 3000 for p in files)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[alerts]\nmax_bytes = -1\n", "[alerts] max_bytes must be a whole number >= 0"),
        ('[alerts]\nmax_bytes = "10MB"\n', "[alerts] max_bytes must be a whole number >= 0"),
        ("[alerts]\nbackups = 0\n", "[alerts] backups must be a whole number >= 1 (how many rotated files"),
        ("[alerts]\nbackups = 2.5\n", "[alerts] backups must be a whole number >= 1"),
        ("[alerts]\nmax_byte = 1000\n", "[alerts] has unknown key(s) max_byte (allowed: log, dedup_seconds,"),
        ("[alerts]\nlog = 5\n", "[alerts] log must be a string path"),
        (
            "[data_migrations]\nmax_batch = 0\n",
            "[data_migrations] max_batch must be a whole number >= 1 (rows)",
        ),
        (
            "[data_migrations]\nbatch = 10\n",
            "[data_migrations] has unknown key(s) batch (allowed: max_batch)",
        ),
    ],
)
def test_bad_rotation_and_batch_settings_are_one_clear_error(alert_log, tmp_path, body, expected):
    config = tmp_path / "tradedb.toml"
    config.write_text(body)
    with pytest.raises(TradeDBError, match=re.escape(expected)):
        load_config()
    result = run_cli("alerts", extra={"TRADEDB_CONFIG": str(config)})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: malformed config file {config}: ") and expected in line
