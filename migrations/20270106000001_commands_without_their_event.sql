-- A command kept on its event no longer repeats what the event's row holds or
-- leads to: its saga (the event's), the saga's type, its time (the event's
-- `recorded_at`), an idempotency key that is `<saga id>:<step>`, and a count
-- of publish attempts that is 0. Each is written only where it differs.
-- `event_commands` reads a kept command whole, in either shape (events
-- written before keep every field), and is what every reader of
-- `saga_events.commands` goes through.
CREATE FUNCTION event_commands(e saga_events)
RETURNS TABLE (message_id uuid, saga_id uuid, saga_type text, step text, attempt integer,
               participant text, command_type text, idempotency_key text, data jsonb,
               created_at timestamptz, traceparent text)
LANGUAGE sql STABLE
AS $$
    SELECT c.message_id, COALESCE(c.saga_id, e.saga_id),
           COALESCE(c.saga_type, (SELECT s.saga_type FROM sagas s WHERE s.id = e.saga_id)),
           c.step, c.attempt, c.participant, c.command_type,
           COALESCE(c.idempotency_key, e.saga_id || ':' || c.step),
           c.data, COALESCE(c.created_at, e.recorded_at), c.traceparent
    FROM jsonb_populate_recordset(NULL::outbox, e.commands) AS c
$$;

CREATE OR REPLACE VIEW commands AS
    SELECT message_id, saga_id, saga_type, step, attempt, participant, command_type,
           idempotency_key, data, created_at, traceparent, sent_at, publish_attempts,
           next_attempt_at, last_error, dead_lettered_at, partition
    FROM outbox
    UNION ALL
    SELECT c.message_id, e.saga_id, c.saga_type, c.step, c.attempt, c.participant,
           c.command_type, c.idempotency_key, c.data, c.created_at, c.traceparent,
           CASE WHEN e.relay_pos IS NULL OR r.epoch IS NULL OR e.relay_pos < r.published_below
                THEN e.recorded_at END,
           0, NULL, NULL, NULL, hashtext(e.saga_id::text) & 63
    FROM saga_events e
    CROSS JOIN LATERAL event_commands(e) AS c
    LEFT JOIN relays r ON r.epoch = e.relay_pos >> 40
    WHERE e.commands IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = c.message_id);
