"""Calling the core from an asset: one place that turns our errors into Dagster failures.

Operator errors (a lock held elsewhere, a contract refused, a schema not ready) are final for this run: retrying
would not change them. A data migration that gave up after its own retries, and a schema step that hit its DDL
``lock_timeout``, are retried by Dagster's RetryPolicy (the data migration resumes from its checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import dagster as dg
from sqlalchemy import text

from data_migrations.engine import DataMigrationFailed
from orchestration.failures import ERROR_TYPE
from tradedb.core.db import connect_checked, database_size
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.schema.locks import DDLLockTimeout

T = TypeVar("T")

RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def core_call(fn: Callable[[], T]) -> T:
    """Run a core function; raise ``dg.Failure`` with the operator's message on our errors.

    The error's class goes along as metadata, so the failure alert can tell a deadline stop or a missing backup
    from a failure without parsing messages.
    """
    try:
        return fn()
    except (DataMigrationFailed, DDLLockTimeout) as exc:
        raise dg.Failure(str(exc), {ERROR_TYPE: type(exc).__name__}, allow_retries=True) from None
    except TradeDBError as exc:
        raise dg.Failure(str(exc), {ERROR_TYPE: type(exc).__name__}, allow_retries=False) from None


def size_and_rows(env: Environment, table: str | None = None) -> tuple[int, int | None]:
    """Database size in bytes and, optionally, one table's row count (for before/after metadata)."""
    with connect_checked(env) as conn:
        rows = conn.scalar(text(f"SELECT count(*) FROM {table}")) if table else None
        return database_size(conn), rows
