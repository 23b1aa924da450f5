"""Parse the legacy text ``events.payload_raw`` into JSONB ``payload`` and link ``instrument_id`` (TRD-430).

Release 1 wrote payloads as text from three producers with different spellings ("Symbol", "ticker", "px", prices
as strings). The pandas transform parses each payload, lower-cases keys, renames the aliases, turns numeric strings
into numbers, and the write-back resolves the symbol to ``instruments.id`` in one UPDATE ... FROM. Payloads that
are not a JSON object go to quarantine with the parser's reason, and so do payloads Python reads but PostgreSQL's
``jsonb`` would refuse (NaN and infinities, which JSON does not have; NUL characters and unpaired surrogates, which
``jsonb`` text cannot hold), each with the reason, so the write-back never meets them.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from data_migrations.base import DataMigration, Invariant, PandasStep, TransformResult

KEY_ALIASES = {"ticker": "symbol", "sym": "symbol", "px": "price", "qty": "quantity", "size": "quantity"}
NUMERIC_KEYS = ("price", "quantity", "strength")


def _not_json_constant(name: str) -> float:
    raise ValueError(f"payload holds {name}, which JSON (and PostgreSQL's jsonb) does not allow")


def _check_text(value: str, where: str) -> None:
    """Refuse text that ``jsonb`` cannot store: NUL characters and unpaired UTF-16 surrogates."""
    if "\x00" in value:
        raise ValueError(f"{where} holds a NUL character, which PostgreSQL text cannot store")
    surrogate = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
    if surrogate is not None:
        raise ValueError(
            f"{where} holds an unpaired surrogate U+{ord(surrogate):04X}, which is not valid Unicode"
        )


def _check_values(value: object, where: str = "payload") -> None:
    """Walk a parsed payload and refuse what ``jsonb`` would refuse (keys and values alike)."""
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}, which JSON does not allow")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), f"key {str(key)[:20]!r}")
            _check_values(item, str(key)[:20])
    elif isinstance(value, list):
        for item in value:
            _check_values(item, where)


def normalise(raw: str) -> dict:
    """Return the canonical payload for one legacy text, or raise ValueError saying why it cannot be."""
    try:
        value = json.loads(raw, parse_constant=_not_json_constant)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"payload is not JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"payload is a JSON {type(value).__name__}, not an object")
    out = {}
    for key, item in value.items():
        name = KEY_ALIASES.get(str(key).strip().lower(), str(key).strip().lower())
        if name in NUMERIC_KEYS and isinstance(item, str):
            try:
                item = float(item)
            except ValueError:
                raise ValueError(f"{name} is not a number: {item!r}") from None
            if not math.isfinite(item):
                raise ValueError(f"{name} is not a finite number: {value[key]!r}")
        if name == "symbol" and isinstance(item, str):
            item = item.strip().upper()
        out[name] = item
    _check_values(out)
    return out


def transform(batch: pd.DataFrame) -> TransformResult:
    rows, rejected = [], []
    for key, raw in zip(batch["id"], batch["payload_raw"], strict=True):
        try:
            payload = normalise(raw)
        except ValueError as exc:
            rejected.append((key, str(exc)))
            continue
        symbol = payload.get("symbol")
        rows.append(
            (
                key,
                json.dumps(payload, sort_keys=True, allow_nan=False),
                symbol if isinstance(symbol, str) else None,
            )
        )
    return TransformResult(
        rows=pd.DataFrame(rows, columns=["id", "payload", "symbol"]),
        rejected=pd.DataFrame(rejected, columns=["key", "reason"]),
    )


migration = DataMigration(
    name="events.normalise_event_payload",
    after="0011",
    table="events",
    description=__doc__,
    pending_where="t.payload IS NULL",
    step=PandasStep(
        read_sql="SELECT id, payload_raw FROM events WHERE id > :lo AND id <= :hi AND payload IS NULL ORDER BY id",
        transform=transform,
        result_columns={"id": "bigint", "payload": "text", "symbol": "text"},
        write_sql="""
            UPDATE events e SET payload = r.payload::jsonb, instrument_id = i.id
            FROM batch_result r LEFT JOIN instruments i ON i.symbol = r.symbol
            WHERE e.id = r.id AND e.id > :lo AND e.id <= :hi
        """,
    ),
    revert_sql="UPDATE events SET payload = NULL, instrument_id = NULL WHERE id > :lo AND id <= :hi",
    invariants=(
        Invariant(
            "instrument_matches_symbol",
            """SELECT e.id, e.payload->>'symbol' AS symbol, e.instrument_id FROM events e
               JOIN instruments i ON i.symbol = e.payload->>'symbol'
               WHERE e.instrument_id IS DISTINCT FROM i.id""",
        ),
    ),
)
