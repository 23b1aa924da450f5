"""Dagster's own storage on PostgreSQL, as production runs it: ``tradedb dagster-config --postgres`` writes the file,
``tradedb deploy``, ``rehearse`` and ``plan`` work unchanged on it, runs and materialisations are read back from
that database, and the size-1 pool still keeps two deploys' steps apart. A ``dagster.yaml`` that cannot load is
one error line naming the file from every command that opens the instance.
"""

from __future__ import annotations

import subprocess
import time

import dagster as dg
import pytest
import yaml

from orchestration.dagster_yaml import LOCAL_YAML
from orchestration.definitions import defs
from orchestration.instance import write_postgres_config
from orchestration.rehearsal.assets import latest_rehearsal
from tests.conftest import BIN, ROOT, cli_env, run_cli
from tests.helpers import current, scalar, seeded
from tradedb import schema
from tradedb.core.errors import TradeDBError

PASSWORD = "not-in-the-file-4711"  # the test server trusts its clients, so any password connects


def url_of(env) -> str:
    return env.url.render_as_string(hide_password=False)


def test_dagster_config_writes_postgres_storage_without_the_password(make_database, tmp_path, monkeypatch):
    storage = make_database("dagster")
    home = tmp_path / "home"
    extra = {"DAGSTER_HOME": str(home), "COLUMNS": "300"}
    with_password = storage.url.set(password=PASSWORD).render_as_string(hide_password=False)
    wrote = run_cli("dagster-config", "--postgres", with_password, extra=extra)
    assert wrote.returncode == 0, wrote.stderr
    assert PASSWORD not in wrote.stdout + wrote.stderr
    assert "reads DAGSTER_PG_PASSWORD" in wrote.stdout
    text = (home / "dagster.yaml").read_text()
    assert PASSWORD not in text
    config = yaml.safe_load(text)
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2" and db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert db["db_name"] == storage.url.database
    default = yaml.safe_load(LOCAL_YAML)  # our pools and run monitoring, kept
    assert {k: config[k] for k in default} == default and default["concurrency"]["pools"][
        "default_limit"
    ] == 1
    # Dagster created its tables there when the file was tried
    assert scalar(storage, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'") == 1

    # the file reads its password from the variable: checked, and said so when it is missing
    shown = run_cli("dagster-config", extra={**extra, "DAGSTER_PG_PASSWORD": PASSWORD})
    assert shown.returncode == 0, shown.stderr
    assert (
        "PostgreSQL postgresql+psycopg2://postgres:***@" in shown.stdout
        and "Dagster loads it" in shown.stdout
    )
    unset = run_cli("dagster-config", extra=extra)
    assert unset.returncode == 1
    assert unset.stderr.strip().splitlines() == [
        f"error: {home / 'dagster.yaml'}: storage.postgres.postgres_db.password reads the environment variable "
        "DAGSTER_PG_PASSWORD, which is not set"
    ]

    # another database replaces it only with --force; refusals change nothing
    other = make_database("dagster")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with pytest.raises(TradeDBError, match="already exists .*; --force replaces it"):
        write_postgres_config(url_of(other))
    dev = make_database("dev")
    monkeypatch.setenv("TRADEDB_DEV_URL", url_of(dev))
    with pytest.raises(TradeDBError, match="--postgres URL: Dagster's storage .* is the dev database"):
        write_postgres_config(url_of(dev), force=True)
    with pytest.raises(TradeDBError, match=r'database "nope_\w+" does not exist'):
        write_postgres_config(
            url_of(other).replace(other.url.database, "nope_" + other.url.database), force=True
        )
    with pytest.raises(TradeDBError, match="is not a PostgreSQL URL"):
        write_postgres_config("mysql://root@db.internal/dagster", force=True)
    assert (home / "dagster.yaml").read_text() == text
    replaced = write_postgres_config(url_of(other), force=True)
    assert (
        replaced.replaced
        and yaml.safe_load(replaced.path.read_text())["storage"]["postgres"]["postgres_db"]["db_name"]
        == other.url.database
    )


def bare_postgres_db(storage, db_name: str | None = None) -> str:
    """The README's old form: dagster-postgres's default scheme, which SQLAlchemy 2.1 reads as psycopg 3."""
    url = storage.url
    socket = url.query.get("host")  # the embedded test server listens on a unix socket only
    return (
        f"storage:\n  postgres:\n    postgres_db:\n      hostname: {url.host or 'localhost'}\n"
        f"      port: {url.port or 5432}\n      username: {url.username}\n"
        f"      db_name: {db_name or url.database}\n"
        + (f"      params:\n        host: {socket}\n" if socket else "")
    )


@pytest.mark.parametrize(
    ("command", "body", "expected"),
    [
        (
            "deploy",
            bare_postgres_db,
            '{file}: storage.postgres.postgres_db has no scheme; add "scheme: postgresql+psycopg2" under postgres_db',
        ),
        (
            "rehearse",
            lambda s: 'storage:\n  postgres:\n    postgres_url: "postgresql://postgres@localhost/dagster"\n',
            "{file}: storage.postgres.postgres_url starts with postgresql://; write it as postgresql+psycopg2://",
        ),
        ("plan", lambda s: "storage: [\n", "malformed Dagster instance config {file} at line 2, column 1"),
        (
            "ui",
            lambda s: "storag:\n  postgres: {}\n",
            'Dagster instance config {file} cannot be loaded: Received unexpected config entry "storag" at the root',
        ),
        (
            "deploy",
            lambda s: bare_postgres_db(s, "nope") + "      scheme: postgresql+psycopg2\n",
            '{file}: Dagster\'s storage database postgresql+psycopg2:// … /nope … cannot be reached: … "nope" does not exist',
        ),
        (
            "ui",
            lambda s: "storage:\n  postgres:\n    postgres_url:\n      env: TRADEDB_TEST_NO_SUCH_VARIABLE\n",
            "{file}: storage.postgres.postgres_url reads the environment variable TRADEDB_TEST_NO_SUCH_VARIABLE",
        ),
        (
            "plan",
            lambda s: "concurrency:\n  pools:\n    default_limit: one\n",
            "Dagster instance config {file} cannot be loaded: Object 'one' is not a int",
        ),
    ],
    ids=["no-scheme", "bare-url", "malformed", "unknown-key", "unreachable", "unset-variable", "bad-value"],
)
def test_a_dagster_yaml_that_cannot_load_is_one_error_line(make_database, tmp_path, command, body, expected):
    storage, dev, staging = make_database("dagster"), make_database("dev"), make_database("staging")
    home = tmp_path / "home"
    home.mkdir()
    file = home / "dagster.yaml"
    file.write_text(body(storage))
    extra = {"DAGSTER_HOME": str(home), "TRADEDB_STAGING_URL": url_of(staging)}
    args = {"plan": ["plan", "--env", "dev"], "ui": ["ui", "--port", "1"]}.get(command, [command])
    result = run_cli(*args, env=dev, extra=extra)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for fragment in expected.format(file=file).split(" … "):  # in the line, in this order
        assert fragment in line, line
        line = line[line.index(fragment) + len(fragment) :]
    assert "Traceback" not in result.stdout and file.read_text() == body(storage)


# ------------------------------------------------------------------------------------------------ deploys on it


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's (start, end) time from the run's event log."""
    starts, ends = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or record.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[record.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[record.step_key] = record.timestamp
    return {step: (starts[step], ends[step]) for step in starts}


def pool_of(job_name: str, step_key: str) -> str | None:
    return defs.resolve_job_def(job_name).graph.node_dict[step_key].definition.pool


def blocked_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        record.user_message or record.dagster_event.message or ""
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None
        and "blocked by limit for pool" in (record.dagster_event.message or "")
    ]


@pytest.mark.slow
def test_deploy_rehearse_and_plan_with_dagster_storage_on_its_own_postgres(
    postgres_home, make_database, tmp_path
):
    envs = {name: make_database(name) for name in ("dev", "staging", "production")}
    production, dev = seeded(envs["production"], rows=1_000), seeded(envs["dev"], rows=300)
    (tmp_path / "windows.toml").write_text("[production]\nalways = true\n")
    extra = {
        "DAGSTER_HOME": str(postgres_home.home),
        "TRADEDB_WINDOWS": str(tmp_path / "windows.toml"),
        **{f"TRADEDB_{name.upper()}_URL": url_of(env) for name, env in envs.items()},
    }

    rehearsed = run_cli("rehearse", extra=extra, timeout=300)
    assert rehearsed.returncode == 0, rehearsed.stdout[-2000:] + rehearsed.stderr[-2000:]
    planned = run_cli("plan", "--env", "production", extra={**extra, "COLUMNS": "200"})
    assert planned.returncode == 0, planned.stderr
    assert "rehearsal: none yet" not in planned.stdout and "estimated total: unknown" not in planned.stdout

    # production's deploy, its data migrations slowed to two rows a batch; dev's launched while it runs
    slow = tmp_path / "slow.toml"
    slow.write_text("[data_migrations]\nmax_batch = 2\n")
    logs = {name: (tmp_path / f"deploy_{name}.log").open("w") for name in ("production", "dev")}
    procs = {}
    try:
        procs["production"] = launch(
            ["deploy", "--env", "production"], {**extra, "TRADEDB_CONFIG": str(slow)}, logs
        )
        in_data = "SELECT coalesce(sum(batches), 0) FROM tradedb_migrations.data_migration_state"
        wait_for(lambda: has_state(production) and scalar(production, in_data) > 0, procs["production"])
        procs["dev"] = launch(["deploy", "--env", "dev"], extra, logs)
        codes = {name: proc.wait(timeout=300) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for handle in logs.values():
            handle.close()
    assert codes == {"production": 0, "dev": 0}, {
        n: (tmp_path / f"deploy_{n}.log").read_text()[-3000:] for n in logs
    }
    assert current(production) == current(dev) == schema.head()

    with postgres_home.instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = {run.job_name: run for run in instance.get_runs()}
        assert set(runs) == {"rehearse_staging", "deploy_production", "deploy_dev"}
        assert {run.status for run in runs.values()} == {dg.DagsterRunStatus.SUCCESS}
        report = latest_rehearsal(instance)
        assert report is not None and report.ok and report.start_revision == "0006"
        for env_name in ("production", "dev"):
            latest = instance.get_latest_materialization_event(
                dg.AssetKey([env_name, "execution", "rev_0017"])
            )
            assert latest is not None and latest.run_id == runs[f"deploy_{env_name}"].run_id
        intervals = {
            name: step_intervals(instance, runs[f"deploy_{name}"].run_id) for name in ("production", "dev")
        }
        blocked = [m for name in intervals for m in blocked_messages(instance, runs[f"deploy_{name}"].run_id)]

    # the same facts straight from Dagster's tables in its own database
    assets = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] == "production"]
    materialised = postgres_home.scalar(
        "SELECT count(*) FROM event_logs WHERE run_id = :r AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        r=runs["deploy_production"].run_id,
    )
    assert materialised == len(assets)
    assert postgres_home.scalar("SELECT count(*) FROM runs") == 3

    # the pool of size 1 held across the two runs: no two steps of one pool ever overlapped, and one run waited
    assert blocked, "the two deploys never contended for the pool"
    overlaps = [
        (a, b)
        for a, (a0, a1) in intervals["production"].items()
        for b, (b0, b1) in intervals["dev"].items()
        if pool_of("deploy_production", a) is not None
        and pool_of("deploy_production", a) == pool_of("deploy_dev", b)
        and a0 < b1
        and b0 < a1
    ]
    assert overlaps == []
    assert (
        sum(1 for s in intervals["dev"] if pool_of("deploy_dev", s)) >= 20
    )  # every migration step was timed


def launch(args: list[str], extra: dict[str, str], logs: dict) -> subprocess.Popen:
    name = args[args.index("--env") + 1]
    return subprocess.Popen(
        [str(BIN / "tradedb"), *args],
        cwd=ROOT,
        env=cli_env(None, **extra),
        stdout=logs[name],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def has_state(env) -> bool:
    return bool(scalar(env, "SELECT to_regclass('tradedb_migrations.data_migration_state') IS NOT NULL"))


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the first deploy ended before the second was launched"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_the_older_per_storage_entries_are_checked_too(tmp_path):
    from orchestration.dagster_yaml import check, storages

    file = tmp_path / "dagster.yaml"
    file.write_text(
        "run_storage:\n  module: dagster_postgres.run_storage\n  class: PostgresRunStorage\n  config:\n"
        "    postgres_db:\n      hostname: db\n      username: dagster\n      db_name: dagster\n"
        "      scheme: postgresql+psycopg2\n"
        "event_log_storage:\n  module: dagster_postgres.event_log\n  class: PostgresEventLogStorage\n  config:\n"
        "    postgres_url: postgresql://dagster@db/dagster\n"
    )
    with pytest.raises(
        TradeDBError, match=r"event_log_storage\.config\.postgres_url starts with postgresql://"
    ):
        storages(file)
    file.write_text(file.read_text().replace("postgresql://", "postgresql+psycopg2://"))
    assert [s.where for s in storages(file)] == ["run_storage.config", "event_log_storage.config"]
    with pytest.raises(TradeDBError, match="cannot be reached"):  # host "db" does not resolve here
        check(file)
    file.write_text("")
    assert check(file).url is None and "default storage" in check(file).describe()
