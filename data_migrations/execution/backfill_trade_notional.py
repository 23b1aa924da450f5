"""Backfill ``trades.notional`` = price x quantity for trades written before release 1.3 (TRD-412).

Expand 0008 added the nullable column and the app writes it for new fills; this fills history so contract 0013
can make it NOT NULL. Pure set-based SQL. A legacy trade whose product does not fit ``numeric(24, 8)`` (a price or
quantity typed with a few digits too many, years ago) is refused by PostgreSQL (numeric field overflow); the engine
isolates that trade and quarantines it with the database's reason, and every other trade is backfilled. Contract
0013 then refuses to make the column NOT NULL until someone decides what such a trade's notional is.
"""

from data_migrations.base import DataMigration, Invariant, SqlStep

migration = DataMigration(
    name="execution.backfill_trade_notional",
    after="0008",
    table="trades",
    description=__doc__,
    pending_where="t.notional IS NULL",
    step=SqlStep(
        update_sql="""
            UPDATE trades SET notional = round(price * quantity, 8)
            WHERE id > :lo AND id <= :hi AND notional IS NULL
        """,
    ),
    revert_sql="UPDATE trades SET notional = NULL WHERE id > :lo AND id <= :hi",
    invariants=(
        Invariant(
            "notional_is_price_times_quantity",
            "SELECT id, price, quantity, notional FROM trades WHERE notional IS DISTINCT FROM round(price * quantity, 8)",
        ),
    ),
)
