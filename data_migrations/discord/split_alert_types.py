"""Split the comma-separated ``alert_subscriptions.alert_types`` into rows of ``alert_subscription_types`` (TRD-455).

Expand 0012 created the table; contract 0016 drops the text column. Tokens are trimmed and lower-cased and
duplicates collapse; a subscription naming a type the bot does not know is quarantined whole, so no operator
loses an alert they thought they had without being told.
"""

from data_migrations.base import DataMigration, Invariant, SqlStep
from tradedb.core.models.discord import ALERT_TYPES

KNOWN = "ARRAY[" + ", ".join(f"'{t}'" for t in ALERT_TYPES) + "]"
TOKENS = "(SELECT array_agg(lower(btrim(x))) FROM unnest(string_to_array(a.alert_types, ',')) x WHERE btrim(x) <> '')"

migration = DataMigration(
    name="discord.split_alert_types",
    after="0012",
    table="alert_subscriptions",
    description=__doc__,
    pending_where="""btrim(coalesce(t.alert_types, '')) <> ''
        AND NOT EXISTS (SELECT 1 FROM alert_subscription_types s WHERE s.subscription_id = t.id)""",
    step=SqlStep(
        update_sql=f"""
            INSERT INTO alert_subscription_types (subscription_id, alert_type)
            SELECT DISTINCT a.id, tok
            FROM alert_subscriptions a, unnest({TOKENS}) tok
            WHERE a.id > :lo AND a.id <= :hi AND {TOKENS} <@ {KNOWN}::text[]
            ON CONFLICT DO NOTHING
        """,
        reject_sql=f"""
            SELECT a.id AS key, 'unknown alert type(s) in ' || quote_literal(a.alert_types) AS reason
            FROM alert_subscriptions a
            WHERE a.id > :lo AND a.id <= :hi AND btrim(coalesce(a.alert_types, '')) <> ''
              AND NOT ({TOKENS} <@ {KNOWN}::text[])
        """,
        rowcount_is_rows=False,  # one subscription becomes several type rows
    ),
    revert_sql="DELETE FROM alert_subscription_types WHERE subscription_id > :lo AND subscription_id <= :hi",
    invariants=(
        Invariant(
            "every_listed_type_has_a_row",
            f"""SELECT a.id, a.alert_types FROM alert_subscriptions a, unnest({TOKENS}) tok
                WHERE tok = ANY({KNOWN}) AND {TOKENS} <@ {KNOWN}::text[] AND NOT EXISTS (
                    SELECT 1 FROM alert_subscription_types s WHERE s.subscription_id = a.id AND s.alert_type = tok)""",
            legacy=True,
        ),
    ),
)
