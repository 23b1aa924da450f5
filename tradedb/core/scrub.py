"""Masking passwords in everything that leaves the process: alerts, the ledger, logs and Dagster events.

Over-masking is accepted; missing one is not. Three rules: ``scheme://user:password@`` URL credentials,
``password=...`` pairs (libpq keyword strings, some driver messages), and the literal passwords of the database
URLs this process is configured with (variables and config file), which catches them however they were quoted.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from tradedb.core.settings import load_config

MIN_KNOWN_PASSWORD = (
    4  # shorter configured passwords are not masked by value (they would mask ordinary words)
)

# scheme://user:password@  ->  scheme://user:***@  (the password ends at the last @ before whitespace)
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s]*?)@(?=[^\s@]*(\s|$))"
)
# password=secret or password: secret (libpq keyword strings, some driver messages)
_KEYWORD_PASSWORD = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd)[\"']?\s*[=:]\s*)(?P<password>'[^']*'|\"[^\"]*\"|\S+)"
)
# a field whose name says it is a secret is masked whatever its value
_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|api_?key")

# ------------------------------------------------------------------------------------------------ scrubbing


def scrub(value: str) -> str:
    """Mask every password in ``value``: URL credentials, ``password=`` pairs, configured database passwords.

    Used for everything that leaves the process (alerts, the ledger's error text). Over-masking is accepted; a
    string that is not text is returned unchanged.
    """
    if not isinstance(value, str) or not value:
        return value
    out = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", value)
    out = _KEYWORD_PASSWORD.sub(lambda m: f"{m.group('head')}***", out)
    for secret in _known_passwords():
        out = out.replace(secret, "***")
    return out


def _known_passwords() -> list[str]:
    """Passwords of the database URLs this process is configured with (variables and config file)."""
    urls = [v for k, v in os.environ.items() if k.startswith("TRADEDB_") and k.endswith("_URL")]
    if os.environ.get("PGPASSWORD"):
        urls.append("postgresql://user:" + os.environ["PGPASSWORD"] + "@host/db")
    try:
        for section in load_config().get("environments", {}).values():
            if isinstance(section, dict) and isinstance(section.get("url"), str):
                urls.append(section["url"])
    except Exception:  # a malformed config is reported elsewhere; scrubbing must not fail
        pass
    secrets: set[str] = set()
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and len(password) >= MIN_KNOWN_PASSWORD:
            secrets.update({password, unquote(password)})
    return sorted(secrets, key=len, reverse=True)  # longest first, so a password containing another is whole


def plain(value: Any) -> Any:
    """JSON-ready copy of ``value`` with every string scrubbed (dates and objects become strings)."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {scrub(str(k)): "***" if _SECRET_KEY.search(str(k)) else plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return scrub(str(value))
