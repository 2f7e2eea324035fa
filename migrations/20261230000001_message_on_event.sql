-- A reply's message id is kept on the first event it caused, under a unique
-- index, instead of on an inbox row of its own: one row fewer per reply, and
-- the event and its de-duplication are written by one insert. The inbox keeps
-- the replies a saga ignored (they cause no event) and the replies applied
-- before this migration; a message in either is a duplicate.
ALTER TABLE saga_events ADD COLUMN message_id text;
CREATE UNIQUE INDEX saga_events_message ON saga_events (message_id)
    WHERE message_id IS NOT NULL;

-- Every inbound message a saga recorded, wherever it is kept: what an
-- operator's view of a saga lists, and what "seen before" means.
CREATE VIEW received_messages AS
    SELECT message_id, saga_id, 'applied'::text AS outcome, NULL::text AS detail,
           recorded_at AS received_at
    FROM saga_events WHERE message_id IS NOT NULL
    UNION ALL
    SELECT message_id, saga_id, outcome, detail, received_at FROM inbox;
