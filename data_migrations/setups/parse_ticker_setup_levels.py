"""Parse the legacy ``ticker_setups.levels`` text ("entry=101.5;stop=99;target=110") into typed price columns (TRD-388).

Expand 0009 added ``entry_price``, ``stop_price`` and ``target_price``; contract 0014 drops ``levels``. Keys are
case-insensitive and may carry spaces; anything else (a word where a price should be, an empty string, an unknown
key) goes to quarantine with the original text, because guessing a trading level is worse than not having one.
"""

from data_migrations.base import DataMigration, Invariant, SqlStep

NUMBER = r"[0-9]+(\.[0-9]+)?"
PAIR = rf"\s*(entry|stop|target)\s*=\s*{NUMBER}\s*"
VALID_LEVELS = rf"^{PAIR}(;{PAIR})*;?\s*$"


def level(name: str) -> str:
    """SQL extracting one named level from ``levels`` as numeric (NULL when absent)."""
    return rf"substring(levels from '(?i){name}\s*=\s*([0-9]+(?:\.[0-9]+)?)')::numeric"


migration = DataMigration(
    name="setups.parse_ticker_setup_levels",
    after="0009",
    table="ticker_setups",
    description=__doc__,
    pending_where="t.levels IS NOT NULL AND t.entry_price IS NULL AND t.stop_price IS NULL AND t.target_price IS NULL",
    step=SqlStep(
        update_sql=f"""
            UPDATE ticker_setups
            SET entry_price = {level("entry")}, stop_price = {level("stop")}, target_price = {level("target")}
            WHERE id > :lo AND id <= :hi AND levels ~* '{VALID_LEVELS}'
              AND entry_price IS NULL AND stop_price IS NULL AND target_price IS NULL
        """,
        reject_sql=f"""
            SELECT id AS key, 'levels not in entry=N;stop=N;target=N form: ' || quote_literal(levels) AS reason
            FROM ticker_setups
            WHERE id > :lo AND id <= :hi AND levels IS NOT NULL AND levels !~* '{VALID_LEVELS}'
        """,
    ),
    revert_sql="""
        UPDATE ticker_setups SET entry_price = NULL, stop_price = NULL, target_price = NULL
        WHERE id > :lo AND id <= :hi AND levels IS NOT NULL
    """,
    invariants=(
        Invariant(
            "levels_match_typed_prices",
            f"""SELECT id, levels, entry_price, stop_price, target_price FROM ticker_setups
                WHERE levels ~* '{VALID_LEVELS}' AND (
                    entry_price IS DISTINCT FROM {level("entry")} OR stop_price IS DISTINCT FROM {level("stop")}
                    OR target_price IS DISTINCT FROM {level("target")})""",
            legacy=True,
        ),
    ),
)
