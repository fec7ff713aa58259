-- Payload filters: a CEL expression an event must satisfy to reach the
-- endpoint (after its type filters); NULL matches every event.
ALTER TABLE endpoints ADD COLUMN filter TEXT;
