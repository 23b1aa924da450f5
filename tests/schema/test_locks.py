"""The migration lock is per database: a lock held on one database never blocks, nor is named by, another."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tradedb.schema.locks import LOCK_KEY, MigrationLocked, lock_holder, migration_lock


def test_the_lock_and_its_holder_belong_to_one_database(make_database):
    busy, other = make_database("staging"), make_database("dev")
    holder = create_engine(busy.url, connect_args={"application_name": "someone-migrating"}).connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
    holder.commit()
    busy_engine, other_engine = create_engine(busy.url), create_engine(other.url)
    try:
        with pytest.raises(MigrationLocked) as refused, migration_lock(busy_engine, busy):
            pass
        assert "someone-migrating" in refused.value.holder and refused.value.holder in str(refused.value)
        assert lock_holder(other_engine) == "another session"  # never the session of another database
        with migration_lock(other_engine, other):  # the other database migrates freely
            pass
    finally:
        holder.close()
        busy_engine.dispose()
        other_engine.dispose()
