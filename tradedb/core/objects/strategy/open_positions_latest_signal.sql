-- Open positions with the latest signal on their instrument: what the strategy desk reads before adding to or
-- closing a position. A position is open while its quantity is not zero; the latest signal is the newest by
-- generated_at (then id), found through ix_signals_instrument_generated_at. A position with no signal yet keeps
-- its row with the signal columns NULL.
CREATE VIEW public.open_positions_latest_signal AS
SELECT
    p.id AS position_id,
    p.account_id,
    p.instrument_id,
    i.symbol,
    p.quantity,
    p.avg_price,
    p.updated_at AS position_updated_at,
    s.id AS signal_id,
    s.direction AS signal_direction,
    s.strength AS signal_strength,
    s.generated_at AS signal_generated_at
FROM public.positions p
JOIN public.instruments i ON i.id = p.instrument_id
LEFT JOIN LATERAL (
    SELECT sig.id, sig.direction, sig.strength, sig.generated_at
    FROM public.signals sig
    WHERE sig.instrument_id = p.instrument_id
    ORDER BY sig.generated_at DESC, sig.id DESC
    LIMIT 1
) s ON true
WHERE p.quantity <> 0
