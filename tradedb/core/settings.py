"""Which environment, and how to reach its database.

Resolution order for an environment's URL: the variable ``TRADEDB_<ENV>_URL``, then the config file
(``TRADEDB_CONFIG`` or ``tradedb.toml`` in the project root), then the embedded PostgreSQL server. Every URL is
normalised to the psycopg2 driver because SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from tradedb.core.embedded import embedded_url
from tradedb.core.errors import TradeDBError
from tradedb.core.paths import project_root
from tradedb.core.urls import normalise_url

ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "production")
DEFAULT_ENVIRONMENT = "dev"


@dataclass(frozen=True)
class Environment:
    """One named target database. ``embedded`` means the URL points at our own pgserver instance."""

    name: str
    url: URL
    embedded: bool

    @property
    def safe_url(self) -> str:
        """The URL with the password masked: the only form that may be printed, logged or stored."""
        return self.url.render_as_string(hide_password=True)


def current_environment_name(explicit: str | None = None) -> str:
    """Return the validated environment name: explicit argument, else ``TRADEDB_ENV``, else ``dev``."""
    name = (explicit or os.environ.get("TRADEDB_ENV") or DEFAULT_ENVIRONMENT).strip()
    if name not in ENVIRONMENTS:
        raise TradeDBError(f"unknown environment {name!r}: choose one of {', '.join(ENVIRONMENTS)}")
    return name


def config_path() -> Path:
    """Return the config file path: ``TRADEDB_CONFIG`` or ``tradedb.toml`` at the project root."""
    return Path(os.environ.get("TRADEDB_CONFIG", project_root() / "tradedb.toml"))


def load_config() -> dict:
    """Read the optional TOML config file; a malformed file is an error, a missing one is not."""
    path = config_path()
    if not path.exists():
        if "TRADEDB_CONFIG" in os.environ:
            raise TradeDBError(f"config file {path} (from TRADEDB_CONFIG) does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TradeDBError(f"malformed config file {path}: {exc}") from None
    environments = data.get("environments", {})
    if not isinstance(environments, dict):
        raise TradeDBError(f"malformed config file {path}: [environments] must be a table")
    for name, section in environments.items():
        if name not in ENVIRONMENTS:
            raise TradeDBError(
                f"malformed config file {path}: unknown environment [environments.{name}] "
                f"(choose from {', '.join(ENVIRONMENTS)})"
            )
        if not isinstance(section, dict) or not isinstance(section.get("url", ""), str):
            raise TradeDBError(f"malformed config file {path}: [environments.{name}] url must be a string")
        if "alert_webhook" in section:
            validate_webhook(
                section["alert_webhook"], f"config file {path} [environments.{name}] alert_webhook"
            )
    validate_alerts(data.get("alerts", {}), path)
    validate_backups(data.get("backups", {}), path)
    validate_data_migrations(data.get("data_migrations", {}), path)
    return data


def validate_webhook(value: object, source: str) -> str:
    """Return ``value`` if it is an http(s) URL with a host; else one clear error naming ``source``.

    Checked when the config is read, so a typo surfaces as an error on the next command instead of as alerts
    that silently never arrive.
    """
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise TradeDBError(f"{source} must be a string URL (https://...), got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TradeDBError(f"{source} must be an http(s) URL such as https://discord.com/api/webhooks/...")
    return value.strip()


def resolve_environment(explicit: str | None = None) -> Environment:
    """Resolve an environment name to its database URL, starting the embedded server when none is configured."""
    name = current_environment_name(explicit)
    url = configured_url(name)
    if url is not None:
        return Environment(name, url, embedded=False)
    return Environment(name, embedded_url(database_name(name)), embedded=True)


def configured_url(name: str) -> URL | None:
    """The URL ``TRADEDB_<ENV>_URL`` or the config file gives environment ``name``; None means the embedded one."""
    variable = f"TRADEDB_{name.upper()}_URL"
    if os.environ.get(variable):
        return normalise_url(os.environ[variable], variable)
    section = load_config().get("environments", {}).get(name, {})
    if section.get("url"):
        return normalise_url(section["url"], f"{config_path()} [environments.{name}]")
    return None


def database_name(environment: str) -> str:
    """Return the embedded database name for an environment (one database per environment)."""
    return f"tradedb_{environment}"


ALERT_KEYS = ("log", "dedup_seconds", "max_bytes", "backups")
DATA_MIGRATION_KEYS = ("max_batch",)
BACKUP_KEYS = ("root", "keep", "jobs")


def validate_alerts(section: object, path: Path) -> None:
    """Check ``[alerts]``: log a path string, dedup_seconds a number >= 0, the rotation's whole numbers."""
    where = _known_table(section, path, "alerts", ALERT_KEYS)
    if not isinstance(section.get("log", ""), str):
        raise TradeDBError(f"{where} log must be a string path")
    dedup = section.get("dedup_seconds", 0)
    if isinstance(dedup, bool) or not isinstance(dedup, int | float) or dedup < 0:
        raise TradeDBError(f"{where} dedup_seconds must be a number >= 0")
    _whole_number(section, "max_bytes", where, 0, " (the size at which the log rotates; 0 never rotates)")
    _whole_number(section, "backups", where, 1, " (how many rotated files are kept)")


def validate_data_migrations(section: object, path: Path) -> None:
    """Check ``[data_migrations]``: ``max_batch``, the most rows one batch of a deploy may take, a whole number >= 1."""
    where = _known_table(section, path, "data_migrations", DATA_MIGRATION_KEYS)
    _whole_number(section, "max_batch", where, 1, " (rows)")


def max_batch_setting() -> int | None:
    """``[data_migrations] max_batch``: a cap on the engine's adaptive batch size, or None (the engine's own)."""
    return load_config().get("data_migrations", {}).get("max_batch")


def validate_backups(section: object, path: Path) -> None:
    """Check ``[backups]``: root a path string, keep and jobs whole numbers >= 1, nothing else (typos surface)."""
    where = _known_table(section, path, "backups", BACKUP_KEYS)
    if "root" in section and (not isinstance(section["root"], str) or not section["root"].strip()):
        raise TradeDBError(f"{where} root must be a folder path string")
    for key in ("keep", "jobs"):
        _whole_number(section, key, where, 1)


def _known_table(section: object, path: Path, name: str, allowed: tuple[str, ...]) -> str:
    """``[name]`` must be a table of ``allowed`` keys only (a typo is an error, not a silently ignored setting);
    returns the prefix of its error messages."""
    where = f"malformed config file {path}: [{name}]"
    if not isinstance(section, dict):
        raise TradeDBError(f"{where} must be a table")
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise TradeDBError(f"{where} has unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    return where


def _whole_number(section: dict, key: str, where: str, least: int, meaning: str = "") -> None:
    value = section.get(key, least)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise TradeDBError(f"{where} {key} must be a whole number >= {least}{meaning}, got {value!r}")
