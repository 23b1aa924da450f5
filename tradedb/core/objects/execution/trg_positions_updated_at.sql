-- Every UPDATE that changes a position row sets its updated_at (touch_position_updated_at); an UPDATE that
-- leaves the row as it was does not, so a no-op write cannot make a stale position look fresh.
CREATE TRIGGER trg_positions_updated_at BEFORE UPDATE ON public.positions
FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
EXECUTE FUNCTION public.touch_position_updated_at()
