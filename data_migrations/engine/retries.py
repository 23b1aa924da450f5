"""Which database failures are worth another attempt, and the backoff between attempts.

A lock timeout, a statement timeout, a serialization failure or deadlock, and a dropped connection pass with time;
anything else (a syntax error, a missing table, bad data) would fail the same way again, so it is not retried.
"""

from __future__ import annotations

import time

from psycopg2 import errors as pg_errors
from sqlalchemy.exc import DBAPIError

from data_migrations.engine.options import MAX_ATTEMPTS

BACKOFF_SECONDS = 0.2  # first retry delay; doubles per attempt
MAX_BACKOFF_SECONDS = 5.0


def backoff_seconds(attempt: int) -> float:
    """The pause before attempt ``attempt + 1``: doubling from ``BACKOFF_SECONDS``, at most ``MAX_BACKOFF_SECONDS``."""
    return min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1))


def retry_transient(step, attempts: int = MAX_ATTEMPTS, on_retry=None):
    """Call ``step()``; on a transient database failure back off and call it again, up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except DBAPIError as exc:
            if transient_cause(exc) is None or attempt == attempts:
                raise
            time.sleep(backoff_seconds(attempt))
            if on_retry:
                on_retry()
    return None


def transient_cause(exc: DBAPIError) -> str | None:
    """Name a failure worth retrying ('timeout', 'lock', 'conflict', 'connection'), or None."""
    orig = exc.orig
    if isinstance(orig, pg_errors.QueryCanceled):
        return "timeout"
    if isinstance(orig, pg_errors.LockNotAvailable):
        return "lock"
    if isinstance(orig, (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)):
        return "conflict"
    if exc.connection_invalidated or isinstance(orig, pg_errors.AdminShutdown):
        return "connection"
    return None
