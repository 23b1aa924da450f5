"""Sample trading data at the first release's revision, with the legacy shapes later data migrations must fix.

Deterministic for a seed (numpy's PCG64), generated column-wise and loaded with COPY, so a million rows take
seconds, not minutes. ``rows`` sizes the big tables (orders, trades, events); the others scale from it. Real data
is messy, so this is too: levels written with odd spacing and case, payloads from three producers with different
key spellings, alert lists with blanks and duplicates, and a small share of values no parser should accept.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from tradedb import schema
from tradedb.core.db import app_tables, connect_checked
from tradedb.core.errors import TradeDBError
from tradedb.core.settings import Environment

FIRST_RELEASE = "0006"  # release 1.0: the schema production ran for its first months
DEFAULT_ROWS = 2_000
DEFAULT_SEED = 42
EPOCH = pd.Timestamp("2025-12-01T00:00:00Z")
YEAR_SECONDS = 365 * 24 * 3600

SYMBOLS_PER_EXCHANGE = {
    "NASDAQ": "equity",
    "NYSE": "equity",
    "CME": "future",
    "CBOE": "option",
    "COINBASE": "crypto",
}
ALERT_TYPES = np.array(["entry", "stop", "target", "signal", "bias", "fill"])
EVENT_TYPES = np.array(
    ["signal.generated", "order.submitted", "order.filled", "setup.triggered", "bias.changed"]
)
MALFORMED_LEVELS = np.array(
    ["entry=abc;stop=99", "", "entry 101.5", "target=~110", "entry=1,5;stop=1", "n/a"]
)
MALFORMED_PAYLOADS = np.array(
    ['{"symbol": "AAPL", "price": 1', "{'symbol': 'MSFT'}", "[1, 2, 3]", "null", "NaN", '{"px": "12..5"}']
)


@dataclass(frozen=True)
class Sizes:
    """How many rows each table gets for a given ``rows``."""

    rows: int

    @property
    def accounts(self) -> int:
        return 20

    @property
    def instruments(self) -> int:
        return 200

    @property
    def setups(self) -> int:
        return 12

    @property
    def ticker_setups(self) -> int:
        return max(60, self.rows // 10)

    @property
    def signals(self) -> int:
        return max(50, self.rows // 2)

    @property
    def bias(self) -> int:
        return max(50, self.rows // 10)

    @property
    def positions(self) -> int:
        return min(self.accounts * self.instruments, max(20, self.rows // 20))

    @property
    def subscriptions(self) -> int:
        return max(60, self.rows // 20)

    @property
    def messages(self) -> int:
        return max(20, self.rows // 5)


def wipe(conn: Connection) -> None:
    """Drop everything of the app and of our state schema: only for ``seed --reset`` and scratch databases."""
    conn.execute(text("DROP SCHEMA IF EXISTS tradedb_migrations CASCADE"))
    conn.execute(text("DROP SCHEMA public CASCADE"))
    conn.execute(text("CREATE SCHEMA public"))


def seed(
    env: Environment, rows: int = DEFAULT_ROWS, seed_value: int = DEFAULT_SEED, reset: bool = False
) -> dict[str, int]:
    """Build the database at the first release and load sample data; returns rows per table."""
    if rows < 1:
        raise TradeDBError("--rows must be at least 1")
    with connect_checked(env) as conn:
        existing = app_tables(conn)
        if existing and not reset:
            raise TradeDBError(
                f"the {env.name} database already holds tables ({', '.join(existing[:5])}"
                f"{'...' if len(existing) > 5 else ''}); nothing was changed. Use --reset to wipe and reseed it."
            )
        if reset:
            wipe(conn)
    schema.upgrade(env, FIRST_RELEASE)
    with connect_checked(env) as conn:
        return load(conn, rows, seed_value)


def load(conn: Connection, rows: int, seed_value: int) -> dict[str, int]:
    """Generate and COPY every table of the release-1 schema on ``conn`` (one transaction)."""
    rng = np.random.default_rng(seed_value)
    n = Sizes(rows)
    counts: dict[str, int] = {}
    for table, frame in generate(rng, n, rows):
        copy_frame(conn, table, frame)
        counts[table] = len(frame)
        conn.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        )
    conn.execute(text("ANALYZE"))
    return counts


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame into ``table`` (NULL written as \\N so empty strings stay empty strings)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    columns = ", ".join(frame.columns)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def money(cents: np.ndarray) -> pd.Series:
    """Format integer cents as the shortest decimal text (matches PostgreSQL's ``trim_scale``)."""
    whole, frac = np.divmod(cents, 100)
    text_ = pd.Series(whole.astype(str)) + "." + pd.Series(frac).map("{:02d}".format)
    return text_.str.rstrip("0").str.rstrip(".")


def timestamps(rng: np.random.Generator, count: int) -> pd.Series:
    seconds = np.sort(rng.integers(0, YEAR_SECONDS, count))
    return pd.Series(EPOCH + pd.to_timedelta(seconds, unit="s")).dt.strftime("%Y-%m-%d %H:%M:%S+00")


def share(rng: np.random.Generator, count: int, p: float) -> np.ndarray:
    return rng.random(count) < p


def generate(rng: np.random.Generator, n: Sizes, rows: int):
    """Yield (table, frame) in foreign-key order."""
    ids = lambda count: np.arange(1, count + 1)  # noqa: E731 - local shorthand

    yield (
        "accounts",
        pd.DataFrame(
            {
                "id": ids(n.accounts),
                "name": [f"account-{i:03d}" for i in ids(n.accounts)],
                "broker": rng.choice(["ibkr", "alpaca", "tradestation", "coinbase"], n.accounts),
                "base_currency": rng.choice(["USD", "USD", "USD", "EUR", "GBP"], n.accounts),
                "is_active": share(rng, n.accounts, 0.9),
            }
        ),
    )
    exchanges = np.array(list(SYMBOLS_PER_EXCHANGE))
    inst_exchange = rng.choice(exchanges, n.instruments)
    symbols = [
        f"{chr(65 + i % 26)}{chr(65 + (i // 26) % 26)}{chr(65 + (i * 7) % 26)}{i:03d}"
        for i in range(n.instruments)
    ]
    yield (
        "instruments",
        pd.DataFrame(
            {
                "id": ids(n.instruments),
                "symbol": symbols,
                "exchange": inst_exchange,
                "asset_class": [SYMBOLS_PER_EXCHANGE[e] for e in inst_exchange],
                "currency": "USD",
                "tick_size": rng.choice(["0.01", "0.25", "0.0001", "0.05"], n.instruments),
            }
        ),
    )
    yield "events", events_frame(rng, rows, symbols)
    yield (
        "setups",
        pd.DataFrame(
            {
                "id": ids(n.setups),
                "name": [
                    f"{s} {t}"
                    for s, t in zip(
                        ["Breakout", "Pullback", "Reversal", "Gap fill"] * 3,
                        ["5m"] * 4 + ["1h"] * 4 + ["1d"] * 4,
                        strict=True,
                    )
                ],
                "timeframe": ["5m"] * 4 + ["1h"] * 4 + ["1d"] * 4,
                "description": None,
            }
        ),
    )
    yield "ticker_setups", ticker_setups_frame(rng, n)
    signal_ts = rng.integers(1, n.ticker_setups + 1, n.signals).astype(object)
    signal_ts[share(rng, n.signals, 0.3)] = None
    yield (
        "signals",
        pd.DataFrame(
            {
                "id": ids(n.signals),
                "ticker_setup_id": signal_ts,
                "instrument_id": rng.integers(1, n.instruments + 1, n.signals),
                "generated_at": timestamps(rng, n.signals),
                "direction": rng.choice(["long", "short"], n.signals),
                "strength": np.round(rng.random(n.signals), 4),
            }
        ),
    )
    yield (
        "bias",
        pd.DataFrame(
            {
                "id": ids(n.bias),
                "instrument_id": (np.arange(n.bias) % n.instruments) + 1,
                "timeframe": "1d",
                "bias": rng.choice(["bullish", "bearish", "neutral"], n.bias),
                "as_of": (EPOCH + pd.to_timedelta(np.arange(n.bias) // n.instruments, unit="D")).strftime(
                    "%Y-%m-%d %H:%M:%S+00"
                ),
            }
        ),
    )
    yield from execution_frames(rng, n, rows)
    yield from discord_frames(rng, n, rows)


def events_frame(rng: np.random.Generator, rows: int, symbols: list[str]) -> pd.DataFrame:
    sym = rng.choice(np.array(symbols + ["UNKNOWN1", "DELISTED"]), rows)
    price = money(rng.integers(100, 500_000, rows))
    producer = rng.integers(0, 3, rows)
    payloads = np.where(
        producer == 0,
        '{"symbol": "' + pd.Series(sym) + '", "price": ' + price + "}",
        np.where(
            producer == 1,
            '{"Ticker": "' + pd.Series(sym).str.lower() + '", "px": "' + price + '", "qty": 10}',
            '{"sym":"' + pd.Series(sym) + '","size":"5","note":"via webhook"}',
        ),
    )
    bad = share(rng, rows, 0.005)
    payloads[bad] = rng.choice(MALFORMED_PAYLOADS, int(bad.sum()))
    return pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "occurred_at": timestamps(rng, rows),
            "event_type": rng.choice(EVENT_TYPES, rows),
            "source": rng.choice(["scanner", "broker-gateway", "discord-bot"], rows),
            "payload_raw": payloads,
        }
    )


def ticker_setups_frame(rng: np.random.Generator, n: Sizes) -> pd.DataFrame:
    count = n.ticker_setups
    entry = rng.integers(1_000, 50_000, count)
    stop = entry - rng.integers(10, 500, count)
    target = entry + rng.integers(10, 2_000, count)
    levels = ("entry=" + money(entry) + ";stop=" + money(stop) + ";target=" + money(target)).to_numpy(
        dtype=object
    )
    variant = share(rng, count, 0.1)
    levels[variant] = ("ENTRY = " + money(entry[variant]) + " ; Stop=" + money(stop[variant])).to_numpy()
    partial = share(rng, count, 0.05)
    levels[partial] = ("entry=" + money(entry[partial])).to_numpy()
    bad = share(rng, count, 0.03)
    bad[:2] = True  # even the smallest sample carries malformed legacy values
    levels[bad] = rng.choice(MALFORMED_LEVELS, int(bad.sum()))
    levels[share(rng, count, 0.05) & ~bad] = None
    return pd.DataFrame(
        {
            "id": np.arange(1, count + 1),
            "setup_id": rng.integers(1, n.setups + 1, count),
            "instrument_id": rng.integers(1, n.instruments + 1, count),
            "status": rng.choice(["watching", "active", "triggered", "invalidated"], count),
            "levels": levels,
        }
    )


def execution_frames(rng: np.random.Generator, n: Sizes, rows: int):
    account = rng.integers(1, n.accounts + 1, rows)
    instrument = rng.integers(1, n.instruments + 1, rows)
    order_type = rng.choice(["market", "limit", "stop", "stop_limit"], rows, p=[0.5, 0.35, 0.1, 0.05])
    limit = money(rng.integers(100, 500_000, rows)).to_numpy(dtype=object)
    limit[order_type == "market"] = None
    signal = rng.integers(1, n.signals + 1, rows).astype(object)
    signal[share(rng, rows, 0.4)] = None
    yield (
        "orders",
        pd.DataFrame(
            {
                "id": np.arange(1, rows + 1),
                "account_id": account,
                "instrument_id": instrument,
                "signal_id": signal,
                "side": rng.choice(["buy", "sell"], rows),
                "order_type": order_type,
                "quantity": rng.integers(1, 1_000, rows),
                "limit_price": limit,
                "status": rng.choice(
                    ["filled", "filled", "partially_filled", "cancelled", "rejected", "new"], rows
                ),
                "submitted_at": timestamps(rng, rows),
            }
        ),
    )
    order = rng.integers(1, rows + 1, rows)
    yield (
        "trades",
        pd.DataFrame(
            {
                "id": np.arange(1, rows + 1),
                "order_id": order,
                "account_id": account[order - 1],
                "instrument_id": instrument[order - 1],
                "executed_at": timestamps(rng, rows),
                "quantity": money(rng.integers(1, 100_000, rows)),
                "price": money(rng.integers(100, 500_000, rows)),
                "fee": money(rng.integers(0, 500, rows)),
            }
        ),
    )
    pairs = rng.choice(n.accounts * n.instruments, n.positions, replace=False)
    yield (
        "positions",
        pd.DataFrame(
            {
                "id": np.arange(1, n.positions + 1),
                "account_id": pairs // n.instruments + 1,
                "instrument_id": pairs % n.instruments + 1,
                "quantity": rng.integers(1, 5_000, n.positions),
                "avg_price": money(rng.integers(100, 500_000, n.positions)),
            }
        ),
    )


def discord_frames(rng: np.random.Generator, n: Sizes, rows: int):
    yield (
        "discord_guilds",
        pd.DataFrame(
            {
                "id": [1, 2, 3],
                "guild_snowflake": [801234567890123456 + i for i in range(3)],
                "name": ["A+ Traders", "A+ Options Desk", "A+ Crypto"],
            }
        ),
    )
    channels = 15
    yield (
        "discord_channels",
        pd.DataFrame(
            {
                "id": np.arange(1, channels + 1),
                "guild_id": (np.arange(channels) % 3) + 1,
                "channel_snowflake": 901234567890000000 + np.arange(channels),
                "name": [f"alerts-{i}" for i in range(channels)],
                "kind": rng.choice(["text", "announcement", "thread"], channels),
            }
        ),
    )
    count = n.subscriptions
    picks = [rng.choice(ALERT_TYPES, rng.integers(1, 4), replace=False) for _ in range(count)]
    alert_types = np.array([",".join(p) for p in picks], dtype=object)
    messy = share(rng, count, 0.15)
    alert_types[messy] = [
        " " + ", ,".join(t.upper() for t in p) + " ," for p, m in zip(picks, messy, strict=True) if m
    ]
    dup = share(rng, count, 0.05)
    alert_types[dup] = [f"{p[0]},{p[0]}" for p, d in zip(picks, dup, strict=True) if d]
    unknown = share(rng, count, 0.02)
    unknown[0] = True
    alert_types[unknown] = "entry,moon"
    alert_types[share(rng, count, 0.03) & ~unknown] = None
    instrument = rng.integers(1, n.instruments + 1, count).astype(object)
    instrument[share(rng, count, 0.2)] = None
    yield (
        "alert_subscriptions",
        pd.DataFrame(
            {
                "id": np.arange(1, count + 1),
                "channel_id": rng.integers(1, channels + 1, count),
                "instrument_id": instrument,
                "setup_id": None,
                "alert_types": alert_types,
            }
        ),
    )
    event = rng.integers(1, rows + 1, n.messages).astype(object)
    event[share(rng, n.messages, 0.3)] = None
    yield (
        "discord_messages",
        pd.DataFrame(
            {
                "id": np.arange(1, n.messages + 1),
                "channel_id": rng.integers(1, channels + 1, n.messages),
                "event_id": event,
                "sent_at": timestamps(rng, n.messages),
                "content": pd.Series(
                    rng.choice(["Entry hit", "Stop hit", "Target reached", "New signal"], n.messages)
                )
                + " "
                + pd.Series(rng.integers(1, 9999, n.messages)).astype(str),
                "status": rng.choice(["sent", "sent", "sent", "failed", "deleted"], n.messages),
            }
        ),
    )
