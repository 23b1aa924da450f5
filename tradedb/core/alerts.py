"""Alerts: one call, ``send()``, that tells the operator something needs attention, and never gets in the way.

Every alert goes to two sinks:

1. a JSON-lines log file, always (``TRADEDB_ALERT_LOG``, else ``[alerts] log`` in tradedb.toml, else
   ``<state_dir>/alerts.log``); one object per line: time, environment, kind, severity, title, detail, fields,
   and ``delivery`` (what happened at the webhook: ``sent``, ``failed: ...``, ``none``, ``suppressed``); rotated
   by size (``[alerts] max_bytes``, keeping ``backups`` old files; ``alert_log`` says how, safely with several
   writing processes);
2. the environment's webhook, when one is configured (``TRADEDB_<ENV>_ALERT_WEBHOOK``, else ``alert_webhook`` in
   ``[environments.<env>]``). The body ``{"content", "text", "username", "allowed_mentions"}`` is accepted as is
   by Discord incoming webhooks (which need ``content``; ``text`` is ignored), by Discord's Slack-compatible
   ``/slack`` endpoint and by Slack incoming webhooks (which need ``text``; the Discord keys are ignored). No
   embeds or blocks: each platform rejects the other's rich formats' limits differently, plain text works in both.

``send()`` never raises: an alert is raised when something already went wrong, and a broken webhook must not turn
a clean failure report into a crash. Problems are logged as warnings on the ``tradedb.alerts`` logger.

Nothing that leaves this module carries a password: title, detail and fields go through ``scrub()`` (which masks
``scheme://user:password@`` URLs, ``password=...`` pairs and the passwords of the configured database URLs), and the
webhook URL itself (a secret token for Discord and Slack) is only ever named by its host.

Deduplication: an alert with the same (environment, kind, title) as one raised in the last ``dedup_seconds``
(default 300, ``[alerts] dedup_seconds``) is written to the log with ``delivery = "suppressed"`` and not posted
again. Only alerts that were sent (or had no webhook to go to) start a window, so a failed delivery is retried by
the next alert. The lookback reads only the tail of the log (across a rotation), under the log's advisory lock,
which is released while the webhook is called, so two processes raising the same alert at the same instant may,
rarely, both post it: a duplicate is better than a lost alert.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tradedb.core.alert_log import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, AlertLog, Rotation
from tradedb.core.errors import TradeDBError
from tradedb.core.paths import state_dir
from tradedb.core.scrub import plain, scrub
from tradedb.core.settings import config_path, load_config, validate_webhook

log = logging.getLogger("tradedb.alerts")

# ------------------------------------------------------------------------------------------------ kinds

RUN_FAILED = "run_failed"  # a deploy, data migration or rehearsal run failed
LONG_RUNNING = "long_running"  # a run is taking longer than expected
DRIFT = "drift"  # the database schema differs from the models
DOWNGRADE = "downgrade"  # a schema downgrade ran (a rollback operation)
STAMP = "stamp"  # alembic stamp moved the version without running anything
QUARANTINE = "quarantine"  # a data migration set rows aside it could not transform
EDITED_REVISION = "edited_revision"  # an applied revision file changed afterwards
WINDOW_OVERRIDE = "window_override"  # a production run outside its maintenance window, by override
BACKUP_FAILED = "backup_failed"  # the pre-deploy backup could not be taken
DEADLINE_STOP = "deadline_stop"  # a run stopped at its window's end on purpose; the next window resumes it
TEST = "test"  # `tradedb alerts --test`

KINDS: tuple[str, ...] = (
    RUN_FAILED,
    LONG_RUNNING,
    DRIFT,
    DOWNGRADE,
    STAMP,
    QUARANTINE,
    EDITED_REVISION,
    WINDOW_OVERRIDE,
    BACKUP_FAILED,
    DEADLINE_STOP,
)

SEVERITY: dict[str, str] = {
    RUN_FAILED: "error",
    BACKUP_FAILED: "error",
    DRIFT: "warning",
    LONG_RUNNING: "warning",
    DOWNGRADE: "warning",
    STAMP: "warning",
    QUARANTINE: "warning",
    EDITED_REVISION: "warning",
    WINDOW_OVERRIDE: "warning",
    DEADLINE_STOP: "info",
    TEST: "info",
}
DEFAULT_SEVERITY = "warning"  # an unknown kind is still worth a look
SEVERITY_MARK = {"error": "🔴", "warning": "🟠", "info": "🔵"}  # Unicode renders in both Discord and Slack

# ------------------------------------------------------------------------------------------------ limits

DEFAULT_DEDUP_SECONDS = 300  # same alert within five minutes: post once
WEBHOOK_TIMEOUT_S = 3.0  # per attempt; an alert must not hold a run up for long
WEBHOOK_ATTEMPTS = 2  # one retry, for a dropped connection, a 5xx or a 429
RETRY_PAUSE_S = 0.5  # before the retry
DISCORD_CONTENT_LIMIT = 2000  # Discord rejects longer `content` (counted here in UTF-16 units, the strictest)
LOG_DETAIL_LIMIT = 16_000  # characters of detail kept in one log line
DEDUP_TAIL_BYTES = 256 * 1024  # how much of the log's end the dedup lookback reads
USERNAME = "tradedb"  # Discord: 1-80 characters, must not contain "discord" or "clyde"
USER_AGENT = "tradedb-alerts/0.1"  # Discord's edge may refuse urllib's default "Python-urllib" agent

# ------------------------------------------------------------------------------------------------ configuration


def log_path() -> Path:
    """Where the alert log is: ``TRADEDB_ALERT_LOG``, else ``[alerts] log``, else ``<state_dir>/alerts.log``.

    A relative ``[alerts] log`` is relative to the config file's folder, like everything else in it.
    """

    if os.environ.get("TRADEDB_ALERT_LOG"):
        return Path(os.environ["TRADEDB_ALERT_LOG"])
    configured = load_config().get("alerts", {}).get("log")
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else config_path().parent / path
    return state_dir() / "alerts.log"


def dedup_seconds() -> float:
    """The deduplication window: ``[alerts] dedup_seconds`` or five minutes."""
    return float(load_config().get("alerts", {}).get("dedup_seconds", DEFAULT_DEDUP_SECONDS))


def rotation() -> Rotation:
    """When the log rolls over: ``[alerts] max_bytes`` (default 10 MiB) and ``backups`` (default 5)."""
    section = load_config().get("alerts", {})
    return Rotation(
        int(section.get("max_bytes", DEFAULT_MAX_BYTES)), int(section.get("backups", DEFAULT_BACKUPS))
    )


def alert_log() -> AlertLog:
    """The configured log with its rotation, or the default one when the config cannot be read.

    An alert must land somewhere: a config that cannot be read is logged as a warning, not raised.
    """
    try:
        return AlertLog(log_path(), rotation())
    except Exception as exc:
        log.warning("alert log setting unreadable (%s); writing to the default", scrub(str(exc)))
        return AlertLog(state_dir() / "alerts.log")


def webhook_variable(env_name: str) -> str:
    return f"TRADEDB_{re.sub(r'[^A-Z0-9]', '_', env_name.upper())}_ALERT_WEBHOOK"


def webhook_url(env_name: str) -> str | None:
    """The environment's webhook (variable first, then the config file), or None; a malformed one is an error."""
    variable = webhook_variable(env_name)
    if os.environ.get(variable):
        return validate_webhook(os.environ[variable], variable)
    section = load_config().get("environments", {}).get(env_name, {})
    return (section.get("alert_webhook") or "").strip() or None  # validated by load_config


def webhook_host(url: str) -> str:
    """The only part of a webhook URL that may be shown: its path holds the secret token."""
    try:
        return urlsplit(url).hostname or "webhook"
    except ValueError:
        return "webhook"


# ------------------------------------------------------------------------------------------------ the alert


def build(
    env_name: str,
    kind: str,
    title: str,
    detail: str = "",
    fields: dict | None = None,
    *,
    severity: str | None = None,
) -> dict[str, Any]:
    """The scrubbed record of one alert, as written to the log (without its delivery outcome)."""
    kind = str(kind or "alert")
    return {
        "time": datetime.now(UTC).isoformat(),
        "environment": scrub(str(env_name)),
        "kind": kind,
        "severity": severity or SEVERITY.get(kind, DEFAULT_SEVERITY),
        "title": scrub(str(title or kind)).strip() or kind,
        "detail": _truncate(scrub(str(detail or "")), LOG_DETAIL_LIMIT),
        "fields": plain(dict(fields or {})),
    }


def message_text(record: dict[str, Any]) -> str:
    """The one plain-text message both platforms show: headline, detail, then ``key: value`` lines."""
    mark = SEVERITY_MARK.get(record["severity"], "⚪")
    lines = [f"{mark} [{record['environment']}] {record['kind']}: {record['title']}"]
    if record["detail"]:
        lines.append(record["detail"])
    for key, value in record["fields"].items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append(f"{key}: {shown}")
    return _truncate("\n".join(lines), DISCORD_CONTENT_LIMIT)


def webhook_body(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for Discord and Slack alike (see the module docstring for why these keys and no others)."""
    text = message_text(record)
    return {
        "content": text,  # Discord
        "text": text,  # Slack, and Discord's /slack endpoint
        "username": USERNAME,
        "allowed_mentions": {"parse": []},  # Discord: an error message quoting @everyone pings no one
    }


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-16 units, saying so at the end."""
    if _utf16_len(text) <= limit:
        return text
    marker = "\n… (truncated)"
    budget = limit - _utf16_len(marker)
    out, used = [], 0
    for char in text:
        width = _utf16_len(char)
        if used + width > budget:
            break
        out.append(char)
        used += width
    return "".join(out) + marker


# ------------------------------------------------------------------------------------------------ delivery


@dataclass(frozen=True)
class Delivery:
    """What a webhook answered: ``ok``, the HTTP status (None when no answer), a one-line reason."""

    ok: bool
    status: int | None
    reason: str

    def describe(self) -> str:
        return "sent" if self.ok else f"failed: {self.reason}"


def deliver(
    url: str, body: dict[str, Any], *, timeout: float | None = None, attempts: int | None = None
) -> Delivery:
    """POST ``body`` as JSON; retry once on no answer, 5xx or 429; never raise."""
    timeout = WEBHOOK_TIMEOUT_S if timeout is None else timeout
    attempts = WEBHOOK_ATTEMPTS if attempts is None else attempts
    data = json.dumps(body).encode()
    result = Delivery(False, None, "not attempted")
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(RETRY_PAUSE_S)
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Delivery(True, response.status, f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            result = Delivery(False, exc.code, f"HTTP {exc.code} {exc.reason}".strip() + _answer(exc))
            if exc.code < 500 and exc.code != 429:
                return result  # our request is wrong: repeating it will not help
        except urllib.error.URLError as exc:
            result = Delivery(False, None, f"no answer from {webhook_host(url)}: {exc.reason}")
        except (TimeoutError, OSError) as exc:
            result = Delivery(False, None, f"no answer from {webhook_host(url)}: {exc or type(exc).__name__}")
    return result


def _answer(exc: urllib.error.HTTPError) -> str:
    """The first line of an error response (Slack says why there: ``invalid_payload``, ``no_text``)."""
    try:
        lines = exc.read(300).decode("utf-8", "replace").strip().splitlines()
    except Exception:
        return ""
    return f": {scrub(lines[0])[:200]}" if lines else ""


# ------------------------------------------------------------------------------------------------ the log


def _is_duplicate(alerts_log: AlertLog, record: dict[str, Any], window_s: float) -> bool:
    """Whether the same (environment, kind, title) was raised, and not suppressed, within ``window_s``."""
    if window_s <= 0:
        return False
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    key = (record["environment"], record["kind"], record["title"])
    for earlier in reversed(alerts_log.tail(DEDUP_TAIL_BYTES)):
        try:
            when = datetime.fromisoformat(earlier["time"])
        except (KeyError, TypeError, ValueError):
            continue
        if when < since:
            return False
        counts = earlier.get("delivery") in ("sent", "none")
        if counts and (earlier.get("environment"), earlier.get("kind"), earlier.get("title")) == key:
            return True
    return False


def recent(limit: int = 50, *, environment: str | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` alerts in the log and its rotated files (oldest first), optionally for one environment."""
    return AlertLog(log_path(), rotation()).recent(limit, environment)


# ------------------------------------------------------------------------------------------------ the entry point


def send(env_name: str, kind: str, title: str, detail: str = "", fields: dict | None = None) -> None:
    """Raise an alert: log it, post it to the environment's webhook unless a duplicate; never raise.

    Args:
        env_name: the environment it concerns (``dev``, ``staging``, ``production``).
        kind: one of ``KINDS`` (others are accepted, with severity ``warning``).
        title: one line; with ``kind`` and ``env_name`` it is the deduplication key, so keep run ids out of it.
        detail: free text (an error message, a traceback's last lines).
        fields: small key/value facts shown as ``key: value`` lines (run id, duration, revision).
    """
    try:
        _send(env_name, kind, title, detail, fields)
    except Exception as exc:  # the promise: an alert never breaks its caller
        log.warning("could not raise the %s alert for %s: %s", kind, env_name, scrub(str(exc)))


def _send(env_name: str, kind: str, title: str, detail: str, fields: dict | None) -> None:
    record = build(env_name, kind, title, detail, fields)
    alerts_log = alert_log()
    with alerts_log.locked():
        duplicate = _is_duplicate(alerts_log, record, _dedup_seconds_or_default())
        if duplicate:
            record["delivery"] = "suppressed"
            alerts_log.append_held(record)
            return
    record["delivery"] = "none"
    try:
        url = webhook_url(env_name)
        if url:
            record["delivery"] = "failed: interrupted"
            outcome = deliver(url, webhook_body(record))
            record["delivery"] = outcome.describe()
            if not outcome.ok:
                log.warning(
                    "the %s alert webhook at %s did not take the %s alert: %s",
                    env_name,
                    webhook_host(url),
                    kind,
                    outcome.reason,
                )
    except TradeDBError as exc:  # a malformed webhook variable: the alert still reaches the log
        record["delivery"] = f"failed: {exc}"
        log.warning("no %s alert webhook: %s", env_name, exc)
    finally:
        alerts_log.write(record)


def _dedup_seconds_or_default() -> float:
    try:
        return dedup_seconds()
    except Exception:
        return DEFAULT_DEDUP_SECONDS


def send_test(env_name: str) -> Delivery:
    """Post a test alert to ``env_name``'s webhook now (no dedup); a missing or failing webhook is an error."""
    url = webhook_url(env_name)
    if not url:
        raise TradeDBError(
            f"no alert webhook for {env_name}: set {webhook_variable(env_name)} or alert_webhook in "
            f"[environments.{env_name}] of tradedb.toml"
        )
    record = build(
        env_name, TEST, "test alert from tradedb", "If you can read this, alerts reach this channel."
    )
    outcome = deliver(url, webhook_body(record))
    record["delivery"] = outcome.describe()
    alert_log().write(record)
    if not outcome.ok:
        raise TradeDBError(f"the {env_name} alert webhook at {webhook_host(url)} failed: {outcome.reason}")
    return outcome
