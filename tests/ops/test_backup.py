"""Backups and verified restores against a real PostgreSQL: dumps, manifests, rows, swaps, retention, errors.

The embedded server trusts local connections, so the URLs below carry a made-up password that the server never
checks: it still travels through every code path (passfile, manifest, rows, output), where it must never show.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import run_cli
from tests.helpers import execute, ledger_entry, scalar, seeded
from tradedb.core.db import connect_checked, make_engine
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment
from tradedb.ops import backup
from tradedb.ops.backup import restoring
from tradedb.ops.checksums import database_checksums
from tradedb.schema.locks import MigrationLocked, migration_lock

PASSWORD = "s3cret:pw\\x"  # a colon and a backslash exercise the passfile escaping


def with_password(env: Environment) -> Environment:
    """``env`` with a password in its URL (unless the test server already needs a real one)."""
    if env.url.password:
        return env
    return Environment(env.name, env.url.set(password=PASSWORD), embedded=False)


def password_of(env: Environment) -> str:
    return env.url.password or PASSWORD


def checksums(env: Environment) -> dict[str, str]:
    with connect_checked(env) as conn:
        return database_checksums(conn)


def stray_databases(env: Environment) -> list[str]:
    """Scratch or old databases a restore of ``env``'s database left behind."""
    prefix = env.url.database
    return scalar(
        env,
        "SELECT coalesce(array_agg(datname), '{}') FROM pg_database WHERE datname LIKE :p1 OR datname LIKE :p2",
        p1=f"{prefix}\\_restore\\_%",
        p2=f"{prefix}\\_old\\_%",
    )


def ledger_rows(env: Environment, kind: str) -> list[dict]:
    from tradedb.schema import ledger

    with connect_checked(env) as conn:
        return [r for r in ledger.entries(conn) if r["kind"] == kind]


@pytest.fixture(autouse=True)
def backup_root(tmp_path, monkeypatch) -> Path:
    """Every test gets its own backup root and an empty config file (no [backups] table unless it writes one)."""
    root = tmp_path / "backups"
    config = tmp_path / "tradedb.toml"
    config.write_text("")
    monkeypatch.setenv("TRADEDB_BACKUP_DIR", str(root))
    monkeypatch.setenv("TRADEDB_CONFIG", str(config))
    monkeypatch.delenv("TRADEDB_PG_BIN", raising=False)
    monkeypatch.delenv("TRADEDB_PG_BUNDLED", raising=False)
    return root


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir() and p.parent != root] if root.exists() else []


def fake_tools(folder: Path, version: str, dump_script: str = "exit 1") -> Path:
    """A folder of stand-in pg_dump/pg_restore/psql answering ``--version`` with ``version``."""
    folder.mkdir(parents=True)
    for tool in backup.TOOLS:
        script = folder / tool
        script.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "--version" ]; then echo "{tool} (PostgreSQL) {version}"; exit 0; fi\n'
            + (dump_script if tool == "pg_dump" else "exit 1")
            + "\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


# ------------------------------------------------------------------------------------------------ backups


def test_backup_writes_a_directory_dump_a_manifest_and_a_row(env):
    env = with_password(seeded(env))
    made = backup.take_backup(env, reason="before TRD-999", launched_by="dagster:run-1", jobs=2)

    assert (made.path / "toc.dat").is_file() and made.path.parent.name == "dev"
    manifest = json.loads((made.path / backup.MANIFEST).read_text())
    assert manifest["id"] == made.id == made.path.name and made.id.endswith("_0006")
    assert manifest["reason"] == "before TRD-999" and manifest["launched_by"] == "dagster:run-1"
    assert manifest["checksums"] == checksums(env) and made.tables == 14
    assert manifest["size_bytes"] > 0 and manifest["tool_version"] and manifest["jobs"] == 2
    assert password_of(env) not in (made.path / backup.MANIFEST).read_text()
    assert "***" in manifest["url"]

    row = scalar(env, "SELECT to_jsonb(b) FROM tradedb_migrations.backups b WHERE id = :i", i=made.id)
    assert row["status"] == "ok" and row["checksums"] == made.checksums and row["revision"] == "0006"
    assert password_of(env) not in json.dumps(row)
    [entry] = ledger_rows(env, "backup")
    assert (entry["name"], entry["outcome"], entry["run_id"]) == (made.id, "success", "run-1")

    assert backup.latest_backup("dev") == made and backup.find_backup(env, made.id) == made
    assert backup.find_backup("dev", "latest") == made
    with pytest.raises(TradeDBError, match=f"no backup 'nope' of dev; the newest are: {made.id}"):
        backup.find_backup("dev", "nope")
    with pytest.raises(TradeDBError, match="no backups of staging"):
        backup.find_backup("staging", "latest")


def test_restore_into_another_environment_matches_the_snapshot_despite_writes(make_database):
    production = with_password(seeded(make_database("production")))
    staging = with_password(seeded(make_database("staging"), rows=50))
    execute(staging, f"ALTER DATABASE \"{staging.url.database}\" SET work_mem = '7MB'")
    execute(staging, f'REVOKE TEMPORARY ON DATABASE "{staging.url.database}" FROM PUBLIC')
    acl_sql = "SELECT array_agg(a ORDER BY a) FROM pg_database, unnest(datacl::text[]) a WHERE datname = current_database()"
    acl_before = scalar(staging, acl_sql)

    stop, writes = threading.Event(), [0]

    def writer() -> None:  # the app keeps writing while the backup runs
        engine = create_engine(production.url)
        with engine.connect() as conn:
            while not stop.is_set():
                conn.execute(text("UPDATE accounts SET broker = :b WHERE id = 1"), {"b": f"w{writes[0]}"})
                conn.commit()
                writes[0] += 1
        engine.dispose()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        made = backup.take_backup(production, reason="rehearsal source")
    finally:
        stop.set()
        thread.join()
    assert writes[0] > 0

    result = backup.restore(made, staging)
    assert (result.mode, result.verified, result.tables_verified) == ("swap", True, 14)
    assert result.source_environment == "production" and result.target_environment == "staging"
    assert result.kept_database is None  # outside production the replaced database is dropped
    assert checksums(staging) == made.checksums  # the dump and the checksums describe the same instant
    assert stray_databases(staging) == []
    assert scalar(staging, "SELECT current_setting('work_mem')") == "7MB"
    assert scalar(staging, acl_sql) == acl_before
    [entry] = ledger_rows(staging, "restore")
    assert entry["outcome"] == "success" and entry["detail"]["source_environment"] == "production"

    with pytest.raises(TradeDBError, match="replaces the production database"):
        backup.restore(made, production)


def test_a_copy_that_fails_verification_never_reaches_the_target(make_database):
    source = seeded(make_database("production"))
    target = seeded(make_database("staging"), rows=50)
    before = checksums(target)
    made = backup.take_backup(source, reason="test")

    def corrupt(copy: Environment) -> None:
        execute(copy, "UPDATE accounts SET broker = 'tampered' WHERE id = 1")

    with pytest.raises(
        TradeDBError, match=r"table\(s\) accounts differ .* staging database was left untouched"
    ):
        backup.restore(made, target, before_verify=corrupt)
    assert checksums(target) == before
    assert stray_databases(target) == []
    assert [r["outcome"] for r in ledger_rows(target, "restore")] == ["failure"]

    with pytest.raises(
        TradeDBError, match="left untouched"
    ):  # the in-place fallback checks a scratch copy first
        backup.restore(made, target, in_place=True, before_verify=corrupt)
    assert checksums(target) == before


def test_in_place_restore_of_the_same_environment_keeps_the_ledger_since_the_backup(make_database):
    env = seeded(make_database("staging"))
    made = backup.take_backup(env, reason="test")
    execute(env, "UPDATE accounts SET broker = 'changed after the backup'")

    result = backup.restore(made, env, in_place=True)
    assert (result.mode, result.tables_verified) == ("in-place", 14)
    assert checksums(env) == made.checksums

    execute(env, "DELETE FROM trades")
    result = backup.restore(made, env)
    assert result.mode == "swap" and checksums(env) == made.checksums
    # the backup, and both restores since, are on record in the database that is live now
    assert [r["name"] for r in ledger_rows(env, "backup")] == [made.id]
    assert len(ledger_rows(env, "restore")) == 2


def test_retention_keeps_the_newest_backups(env, tmp_path):
    (tmp_path / "tradedb.toml").write_text("[backups]\nkeep = 2\n")
    first, second, third = (backup.take_backup(env, reason=f"b{i}") for i in range(3))

    assert [b.id for b in backup.list_backups("dev")] == [third.id, second.id]
    assert not first.path.exists() and third.pruned == (first.id,)
    assert scalar(env, "SELECT status FROM tradedb_migrations.backups WHERE id = :i", i=first.id) == "pruned"
    assert backup.prune(env, keep=1) == [second.id]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("backups = 3", r"\[backups\] must be a table"),
        ("[backups]\nkeep = 0", "keep must be a whole number >= 1, got 0"),
        ('[backups]\nkeep = "5"', "keep must be a whole number >= 1, got '5'"),
        ("[backups]\njobs = true", "jobs must be a whole number >= 1"),
        ("[backups]\nroot = 3", "root must be a folder path string"),
        ("[backups]\nkepp = 3", r"unknown key\(s\) kepp \(allowed: root, keep, jobs\)"),
    ],
)
def test_malformed_backup_settings_are_one_clear_error(tmp_path, body, message):
    (tmp_path / "tradedb.toml").write_text(body + "\n")
    with pytest.raises(TradeDBError, match=message):
        backup.keep_count()


def test_backup_root_from_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TRADEDB_BACKUP_DIR")
    (tmp_path / "tradedb.toml").write_text('[backups]\nroot = "dumps"\nkeep = 3\njobs = 2\n')
    assert backup.backup_root() == tmp_path / "dumps"
    assert (backup.keep_count(), backup.default_jobs()) == (3, 2)


# ------------------------------------------------------------------------------------------------ client tools


def test_client_tools_pick_the_first_set_the_server_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDB_PG_BIN", str(fake_tools(tmp_path / "pg15", "15.4")))
    monkeypatch.setenv("PATH", str(fake_tools(tmp_path / "pg17", "17.0")))

    assert backup.client_tools(150004, bundled=False).source == "TRADEDB_PG_BIN"
    tools = backup.client_tools(16, bundled=False)
    assert (tools.source, tools.version, tools.pg_restore) == (
        "PATH",
        "17.0",
        tmp_path / "pg17" / "pg_restore",
    )
    with pytest.raises(TradeDBError) as caught:
        backup.client_tools(180001, bundled=False)
    message = str(caught.value)
    assert "server runs PostgreSQL 18" in message and "pg_dump 15.4" in message and "pg_dump 17.0" in message
    assert "apt install postgresql-client-18" in message and "TRADEDB_PG_BIN" in message


def test_the_bundled_tools_serve_when_the_system_has_none_that_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    tools = backup.client_tools(16)
    assert tools.source == "pgserver" and tools.major >= 16 and tools.psql.is_file()


def test_missing_client_tools_are_one_clear_error_and_leave_nothing(env, tmp_path, monkeypatch, backup_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    variables = {"TRADEDB_PG_BIN": str(empty), "PATH": str(empty), "TRADEDB_PG_BUNDLED": "0"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TradeDBError, match=r"apt install postgresql-client-\d+.*TRADEDB_PG_BIN"):
        backup.take_backup(env, reason="test")
    assert leftovers(backup_root) == []

    result = run_cli(
        "backup",
        env=with_password(env),
        extra={
            **variables,
            "TRADEDB_BACKUP_DIR": str(backup_root),
            "TRADEDB_CONFIG": str(tmp_path / "tradedb.toml"),
        },
    )
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: no usable PostgreSQL client tools") and PASSWORD not in result.stderr
    )


def test_a_failing_pg_dump_leaves_no_folder_and_no_ok_row_and_never_shows_the_password(
    env, tmp_path, monkeypatch, backup_root
):
    log = tmp_path / "pg_dump.log"
    env = with_password(seeded(env, rows=20))
    script = (  # records its argv and passfile, then fails quoting the password as a careless tool might
        f'echo "$@" > {log}; cat "$PGPASSFILE" >> {log}; '
        f"printf '%s\\n' 'pg_dump: warning: x' 'pg_dump: error: boom {password_of(env)}' 'detail' >&2; exit 1"
    )
    monkeypatch.setenv("TRADEDB_PG_BIN", str(fake_tools(tmp_path / "bin", "99.0", script)))

    with pytest.raises(TradeDBError) as caught:
        backup.take_backup(env, reason="test")
    assert str(caught.value) == "pg_dump of the dev database failed: pg_dump: error: boom ***"
    argv, passfile_line = log.read_text().splitlines()
    assert password_of(env) not in argv and "--snapshot=" in argv and "--no-password" in argv
    assert passfile_line.endswith(password_of(env).replace("\\", "\\\\").replace(":", "\\:"))
    assert leftovers(backup_root) == []
    assert scalar(env, "SELECT array_agg(status) FROM tradedb_migrations.backups") == ["failed"]
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("tradedb-pgpass-*"))


@pytest.mark.parametrize("problem", ["no such database", "nothing listening"])
def test_an_unreachable_database_is_one_clear_error_and_no_folder(env, backup_root, problem):
    url = env.url.set(password=PASSWORD)
    url = (
        url.set(database="t_missing")
        if problem == "no such database"
        else make_url(f"postgresql+psycopg2://app:{PASSWORD}@127.0.0.1:1/app")
    )
    with pytest.raises(TradeDBError, match="cannot reach the dev database") as caught:
        backup.take_backup(Environment("dev", url, False), reason="test")
    assert PASSWORD not in str(caught.value)
    assert leftovers(backup_root) == []


def not_a_folder(tmp_path: Path) -> Path:
    """A backup root under a regular file: creating it fails with NotADirectoryError, even for root."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    return afile / "backups"


def test_an_unwritable_backup_root_is_one_clear_error_and_a_failed_row(env, tmp_path, monkeypatch):
    env = with_password(seeded(env, rows=20))
    root = not_a_folder(tmp_path)
    monkeypatch.setenv("TRADEDB_BACKUP_DIR", str(root))

    with pytest.raises(TradeDBError) as caught:
        backup.take_backup(env, reason="test")
    message = str(caught.value)
    assert message == (
        f"backup of the dev database failed: {root / 'dev'}: Not a directory; set [backups] root in the config "
        f"file or TRADEDB_BACKUP_DIR to a writable folder (the backup root is {root})"
    )
    assert leftovers(tmp_path / "backups") == []
    # the database answered, so the failure is on record there, as the same one line
    row = scalar(env, "SELECT to_jsonb(b) FROM tradedb_migrations.backups b")
    assert (row["status"], row["error"], row["reason"]) == ("failed", message, "test")
    [entry] = ledger_rows(env, "backup")
    assert (entry["outcome"], entry["error"]) == ("failure", message)

    result = run_cli(
        "backup",
        env=env,
        extra={"TRADEDB_BACKUP_DIR": str(root), "TRADEDB_CONFIG": str(tmp_path / "tradedb.toml")},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"]  # one line, no traceback
    assert password_of(env) not in result.stdout + result.stderr


@pytest.fixture
def make_role(server_url) -> Iterator[Callable[..., str]]:
    """Factory for login roles of their own (the embedded server trusts them); dropped, with their databases."""
    made: list[str] = []
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")

    def make(*options: str) -> str:
        name = f"r_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{name}" LOGIN {" ".join(options)}')
        made.append(name)
        return name

    yield make
    with admin.connect() as conn:
        for name in made:
            owned = conn.execute(
                text(
                    "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = :r)"
                ),
                {"r": name},
            ).scalars()
            for database in list(owned):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
    admin.dispose()


def as_role(env: Environment, role: str) -> Environment:
    return Environment(env.name, env.url.set(username=role, password=PASSWORD), embedded=False)


def test_a_missing_privilege_is_one_clear_error_not_a_traceback(env, make_role, tmp_path):
    seeded(env, rows=20)
    reader = as_role(env, make_role())  # may connect, may not create the backups table

    with pytest.raises(TradeDBError) as caught:
        backup.take_backup(reader, reason="test")
    message = str(caught.value)
    assert message.startswith(
        f"backup of the dev database failed: permission denied for database {env.url.database}"
    )
    assert "(while running `CREATE SCHEMA IF NOT EXISTS tradedb_migrations;" in message
    assert message.endswith(f"grant the {reader.url.username} role that privilege, or use a role that has it")
    assert "\n" not in message and PASSWORD not in message
    assert leftovers(tmp_path / "backups") == []

    result = run_cli("backup", env=reader, extra={"TRADEDB_CONFIG": str(tmp_path / "tradedb.toml")})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


def test_a_database_error_during_a_restore_is_one_line_and_leaves_the_target_untouched(
    make_database, monkeypatch
):
    production = seeded(make_database("production"))
    staging = with_password(seeded(make_database("staging"), rows=50))
    made = backup.take_backup(production, reason="test")
    before = checksums(staging)
    copy_properties = restoring.copy_database_properties

    def refused(
        admin, source: str, scratch: str
    ) -> None:  # the database refuses one of the swap's statements
        copy_properties(admin, source, scratch)
        admin.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{scratch}" TO "no such role"')

    monkeypatch.setattr(restoring, "copy_database_properties", refused)
    with pytest.raises(TradeDBError) as caught:
        backup.restore(made, staging)
    message = str(caught.value)
    assert message.startswith(
        f'restore of backup {made.id} into the staging database failed: role "no such role" does not exist '
        "(while running `GRANT CONNECT ON DATABASE"
    )
    assert "\n" not in message and password_of(staging) not in message
    assert checksums(staging) == before and stray_databases(staging) == []
    [entry] = ledger_rows(staging, "restore")
    assert (entry["outcome"], entry["error"]) == ("failure", message)


# ------------------------------------------------------------------------------------------------ restore safety


@contextlib.contextmanager
def migrating(env: Environment) -> Iterator[None]:
    """Hold ``env``'s migration lock as a running migration does."""
    engine = make_engine(env)
    try:
        with migration_lock(engine, env):
            yield
    finally:
        engine.dispose()


@pytest.fixture
def drop_kept(server_url) -> Iterator[Callable[[Environment], None]]:
    """Register an environment whose kept ``<db>_old_*`` databases are dropped at the end of the test."""
    kept: list[Environment] = []
    yield kept.append
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for env in kept:
            for name in stray_databases(env):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def assert_unchanged(env: Environment, before: dict[str, str]) -> None:
    """The target holds what it held, no scratch or old database was left, and no restore was recorded."""
    assert checksums(env) == before
    assert stray_databases(env) == []
    assert ledger_rows(env, "restore") == []


@pytest.mark.parametrize("in_place", [False, True], ids=["swap", "in-place"])
def test_a_restore_is_refused_while_a_migration_holds_the_lock(make_database, in_place):
    env = seeded(make_database("staging"))
    made = backup.take_backup(env, reason="test")
    execute(env, "DELETE FROM trades")
    before = checksums(env)

    with migrating(env), pytest.raises(backup.RestoreBlocked) as caught:
        backup.restore(made, env, in_place=in_place)
    assert isinstance(caught.value, MigrationLocked)
    assert str(caught.value).startswith(
        "cannot restore into the staging database: its migration lock is held by backend pid "
    )
    assert "nothing was changed" in str(caught.value)
    assert_unchanged(env, before)


@pytest.mark.parametrize("in_place", [False, True], ids=["swap", "in-place"])
def test_no_migration_and_no_second_restore_can_start_while_a_restore_runs(make_database, caplog, in_place):
    env = seeded(make_database("staging"))
    made = backup.take_backup(env, reason="test")
    execute(env, "DELETE FROM trades")
    refused: list[str] = []

    def meanwhile(copy: Environment) -> None:  # runs in the middle of the restore, before its swap
        with pytest.raises(MigrationLocked, match=restoring.RESTORE_APPLICATION), migrating(env):
            pass
        with pytest.raises(backup.RestoreBlocked, match="nothing was changed"):
            backup.restore(made, env)
        refused.append(copy.url.database or "")

    result = backup.restore(made, env, in_place=in_place, before_verify=meanwhile)
    assert refused and result.mode == ("in-place" if in_place else "swap")
    assert checksums(env) == made.checksums
    assert stray_databases(env) == []
    assert [r["outcome"] for r in ledger_rows(env, "restore")] == ["success"]
    with migrating(env):  # released: the swap neither killed nor kept its own lock session
        pass
    assert not [r for r in caplog.records if r.name == "tradedb.backup" and "lock" in r.getMessage()]


def test_the_swap_still_ends_other_sessions_on_the_target(make_database):
    env = seeded(make_database("staging"))
    made = backup.take_backup(env, reason="test")
    engine = create_engine(env.url)
    try:
        with engine.connect() as idle:  # an app session left open on the target
            idle.execute(text("SELECT 1"))
            idle.commit()
            assert backup.restore(made, env).mode == "swap"
    finally:
        engine.dispose()
    assert checksums(env) == made.checksums and stray_databases(env) == []


def test_a_production_swap_keeps_the_replaced_database_and_names_it(make_database, drop_kept):
    production = seeded(make_database("production"))
    drop_kept(production)
    made = backup.take_backup(production, reason="test")
    execute(production, "UPDATE accounts SET broker = 'written after the backup'")
    before = checksums(production)

    result = backup.restore(made, production, allow_production=True)
    assert result.mode == "swap" and checksums(production) == made.checksums
    assert result.kept_database and result.kept_database.startswith(f"{production.url.database}_old_")
    assert stray_databases(production) == [result.kept_database]
    kept = Environment("production", production.url.set(database=result.kept_database), embedded=False)
    assert checksums(kept) == before  # the writes since the backup can still be recovered from it
    [entry] = ledger_rows(production, "restore")
    assert entry["detail"]["kept_database"] == result.kept_database


def test_another_environments_backup_reaches_production_only_with_its_own_confirmation(
    make_database, drop_kept
):
    staging = seeded(make_database("staging"), rows=50)
    production = seeded(make_database("production"))
    drop_kept(production)
    made = backup.take_backup(staging, reason="test")
    before = checksums(production)

    with pytest.raises(
        TradeDBError, match=r"taken of staging, not production: .*--allow-cross-env.*nothing was changed"
    ):
        backup.restore(made, production, allow_production=True)
    assert_unchanged(production, before)

    result = backup.restore(made, production, allow_production=True, allow_cross_environment=True)
    assert result.source_environment == "staging" and result.kept_database
    assert checksums(production) == made.checksums


def test_an_in_place_restore_into_production_backs_the_target_up_first(make_database, tmp_path):
    production = seeded(make_database("production"))
    made = backup.take_backup(production, reason="test")
    execute(production, "UPDATE accounts SET broker = 'written after the backup'")
    before = checksums(production)
    (tmp_path / "tradedb.toml").write_text("[backups]\nkeep = 1\n")  # retention would prune `made` now

    result = backup.restore(made, production, allow_production=True, in_place=True)
    assert result.mode == "in-place" and result.kept_database is None
    assert checksums(production) == made.checksums and stray_databases(production) == []
    safety = backup.find_backup("production", result.safety_backup or "")
    assert safety.reason == f"before in-place restore of {made.id}"
    assert safety.checksums == before  # the writes since `made` can be restored from it
    assert made.path.is_dir()  # the safety backup applied no retention: the restored backup is still there
    # the safety backup is on record in the restored database, beside the restore that names it
    [restored] = ledger_rows(production, "restore")
    assert restored["detail"]["safety_backup"] == safety.id
    assert [r["name"] for r in ledger_rows(production, "backup")] == [made.id, safety.id]


def test_an_in_place_restore_into_production_is_refused_when_its_backup_fails(
    make_database, tmp_path, monkeypatch
):
    production = seeded(make_database("production"))
    made = backup.take_backup(production, reason="test")
    execute(production, "UPDATE accounts SET broker = 'written after the backup'")
    before = checksums(production)
    monkeypatch.setenv("TRADEDB_BACKUP_DIR", str(not_a_folder(tmp_path)))

    with pytest.raises(TradeDBError) as caught:
        backup.restore(made, production, allow_production=True, in_place=True)
    message = str(caught.value)
    assert message.startswith(
        f"in-place restore of backup {made.id} into production refused: the backup of its "
    )
    assert "Not a directory" in message and message.endswith("nothing was changed")
    assert checksums(production) == before and stray_databases(production) == []
    [entry] = ledger_rows(production, "restore")
    assert (entry["outcome"], entry["error"]) == ("failure", message)


def test_a_role_that_may_not_rename_production_backs_it_up_before_restoring_in_place(
    make_database, make_role, server_url, tmp_path, backup_root
):
    owner = make_role()  # owns the database and its tables, but may not create databases: no swap
    production = make_database("production")
    execute(
        Environment("production", server_url, False),
        f'ALTER DATABASE "{production.url.database}" OWNER TO "{owner}"',
    )
    production = seeded(as_role(production, owner))
    made = backup.take_backup(production, reason="test")
    execute(production, "DELETE FROM trades")
    before = checksums(production)
    extra = {
        "TRADEDB_BACKUP_DIR": str(backup_root),
        "TRADEDB_CONFIG": str(tmp_path / "tradedb.toml"),
        "COLUMNS": "200",
    }

    restored = run_cli("restore", made.id, "--env", "production", "--yes", env=production, extra=extra)
    assert restored.returncode == 0, restored.stderr
    assert "by in-place" in restored.stdout
    [safety] = [b for b in backup.list_backups("production") if b.id != made.id]
    assert f"the data it replaced was backed up first as {safety.id}" in restored.stdout
    assert f"tradedb restore {safety.id} --env production" in restored.stdout
    assert safety.checksums == before and checksums(production) == made.checksums
    assert PASSWORD not in restored.stdout + restored.stderr


def _remove_one_data_file(made: backup.Backup) -> backup.Backup:
    next(made.path.glob("*.dat*")).unlink()
    return made


def _garble_the_table_of_contents(made: backup.Backup) -> backup.Backup:
    (made.path / "toc.dat").write_bytes(b"not a dump")
    return made


def _vouch_for_a_missing_table(made: backup.Backup) -> backup.Backup:
    return replace(made, checksums={**made.checksums, "ghost": "0"})


@pytest.mark.parametrize("in_place", [False, True], ids=["swap", "in-place"])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_remove_one_data_file, r"is incomplete: no data for table\(s\) \w+; nothing was changed"),
        (_garble_the_table_of_contents, r"is unreadable: .*; nothing was changed"),
        (_vouch_for_a_missing_table, r"is incomplete: no data for table\(s\) ghost; nothing was changed"),
    ],
    ids=["data file missing", "table of contents garbled", "table missing"],
)
def test_a_damaged_dump_is_refused_before_anything_is_touched(
    make_database, monkeypatch, in_place, damage, message
):
    env = seeded(make_database("staging"))
    made = damage(backup.take_backup(env, reason="test"))
    execute(env, "DELETE FROM trades")
    before = checksums(env)

    def no_scratch(
        *args: object,
    ) -> None:  # the in-place fallback of a role without CREATEDB has no scratch copy
        raise AssertionError("a damaged dump must be refused before any database is created")

    monkeypatch.setattr(restoring, "create_scratch", no_scratch)
    with pytest.raises(TradeDBError, match=message):
        backup.restore(made, env, in_place=in_place)
    assert_unchanged(env, before)


@pytest.mark.parametrize("in_place", [False, True], ids=["swap", "in-place"])
def test_a_restore_from_another_environment_keeps_the_targets_own_ledger(make_database, in_place):
    from tradedb.ops.report import collect
    from tradedb.schema import ledger

    production = seeded(make_database("production"))
    staging = seeded(make_database("staging"), rows=50)
    own = backup.take_backup(staging, reason="staging's own")
    rehearsed = ledger_entry(
        "rehearsal",
        "0006",
        environment="staging",
        launched_by="dagster:run-7",
        started_at=own.taken_at,
        seconds=(ledger.now() - own.taken_at).total_seconds(),
    )
    with connect_checked(staging) as conn:
        ledger.record(conn, rehearsed)
    made = backup.take_backup(production, reason="rehearsal source")
    staging_history, production_history = ledger_of(staging, "staging"), ledger_of(production, "production")
    assert ("backup", own.id) in staging_history and ("rehearsal", "0006") in staging_history

    for _ in range(2):  # every rehearsal refreshes staging again: nothing is lost, nothing doubled
        assert backup.restore(made, staging, in_place=in_place).mode == ("in-place" if in_place else "swap")
        assert checksums(staging) == made.checksums

    assert ledger_of(staging, "staging") == [*staging_history, ("restore", made.id), ("restore", made.id)]
    # production's record came with its dump, up to the snapshot (its backup's own entry is written after it)
    assert ledger_of(staging, "production") == [e for e in production_history if e != ("backup", made.id)]
    assert scalar(staging, "SELECT array_agg(id || ' ' || status) FROM tradedb_migrations.backups") == [
        f"{own.id} ok"
    ]
    report = collect(staging)
    assert report.entries == len(staging_history) + 2 and report.by_kind["rehearsal"].total == 1


def ledger_of(env: Environment, environment: str) -> list[tuple[str, str]]:
    """(kind, name) of the ledger entries of ``environment`` in ``env``'s database, oldest first."""
    from tradedb.schema import ledger

    with connect_checked(env) as conn:
        return [(r["kind"], r["name"]) for r in ledger.entries(conn, environment=environment)]


# ------------------------------------------------------------------------------------------------ CLI


def cli_settings(tmp_path, backup_root, staging) -> dict[str, str]:
    """The CLI's environment for these tests: our backups folder, an empty config and staging's URL."""
    return {
        "TRADEDB_BACKUP_DIR": str(backup_root),
        "TRADEDB_CONFIG": str(tmp_path / "tradedb.toml"),
        "TRADEDB_STATE_DIR": str(tmp_path / "state"),
        "TRADEDB_STAGING_URL": staging.url.render_as_string(hide_password=False),
        "COLUMNS": "200",
    }


def test_cli_backup_list_and_restore(make_database, tmp_path, backup_root):
    dev = with_password(seeded(make_database("dev"), rows=100))
    staging = with_password(make_database("staging"))
    extra = cli_settings(tmp_path, backup_root, staging)

    made = run_cli("backup", "--reason", "cli test", env=dev, extra=extra)
    assert made.returncode == 0, made.stderr
    [made_id] = [p.name for p in (backup_root / "dev").iterdir()]
    assert made_id in made.stdout and "14 tables checksummed" in made.stdout

    listed = run_cli("backups", env=dev, extra=extra)
    assert listed.returncode == 0 and made_id in listed.stdout
    as_json = json.loads(run_cli("backups", "--json", env=dev, extra=extra).stdout)
    assert [(b["id"], b["reason"]) for b in as_json] == [(made_id, "cli test")]

    restored = run_cli(
        "restore", "latest", "--env", "staging", "--from-env", "dev", "--yes", env=dev, extra=extra
    )
    assert restored.returncode == 0, restored.stderr
    assert "14 tables verified" in restored.stdout and "by swap" in restored.stdout
    assert checksums(staging) == checksums(dev)

    unknown = run_cli(
        "restore", "nope", "--env", "staging", "--from-env", "dev", "--yes", env=dev, extra=extra
    )
    assert unknown.returncode == 1 and f"the newest are: {made_id}" in unknown.stderr
    for result in (made, listed, restored, unknown):
        assert password_of(dev) not in result.stdout + result.stderr


def test_cli_restore_into_production_from_another_environment(
    make_database, tmp_path, backup_root, drop_kept
):
    staging = with_password(seeded(make_database("staging"), rows=50))
    production = with_password(seeded(make_database("production")))
    drop_kept(production)
    extra = cli_settings(tmp_path, backup_root, staging)
    made = backup.take_backup(staging, reason="test")
    before = checksums(production)
    command = ("restore", "latest", "--env", "production", "--from-env", "staging", "--yes")

    unconfirmed = run_cli(*command, env=production, extra=extra)
    assert unconfirmed.returncode == 1
    assert unconfirmed.stderr.startswith(f"error: backup {made.id} was taken of staging, not production")
    assert "--allow-cross-env" in unconfirmed.stderr
    assert_unchanged(production, before)

    with migrating(production):
        blocked = run_cli(*command, "--allow-cross-env", env=production, extra=extra)
    assert blocked.returncode == 1
    assert blocked.stderr.startswith("error: cannot restore into the production database: its migration lock")
    assert len(blocked.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    assert_unchanged(production, before)

    restored = run_cli(*command, "--allow-cross-env", env=production, extra=extra)
    assert restored.returncode == 0, restored.stderr
    [kept] = stray_databases(production)
    assert f"the replaced database was kept as {kept}" in restored.stdout
    assert f'DROP DATABASE "{kept}"' in restored.stdout
    assert checksums(production) == made.checksums
    for result in (unconfirmed, blocked, restored):
        assert password_of(production) not in result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ PostgreSQL 15


LOCAL_PG15 = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _local_server_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _local_server_answers(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_an_older_server_is_dumped_with_tools_of_its_own_version_or_newer():
    admin = create_engine(LOCAL_PG15, isolation_level="AUTOCOMMIT")
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    try:
        with admin.connect() as conn:
            major = int(conn.scalar(text("SHOW server_version_num"))) // 10000
            for name in names:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        source, target = (Environment("dev", make_url(LOCAL_PG15).set(database=n), False) for n in names)
        made = backup.take_backup(seeded(source, rows=30), reason="test")
        assert made.tool_major >= major
        assert backup.restore(made, target).tables_verified == 14
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
