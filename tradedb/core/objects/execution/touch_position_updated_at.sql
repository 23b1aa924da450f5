-- Stamps a position with the time of the transaction that changed it, so positions.updated_at is current
-- whichever code path (app, back-office script, data migration) wrote the row. Called by the trigger
-- trg_positions_updated_at only.
CREATE FUNCTION public.touch_position_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$
