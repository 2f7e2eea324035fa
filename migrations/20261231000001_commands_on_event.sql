-- A step's commands are kept on its first event, not on outbox rows of their
-- own, and their publishing is recorded by one watermark per relay instead of
-- a sent mark per command.
--
-- Every process's relay has an epoch (a row of `relays`). A step with commands
-- gets a position in it before it commits: `relay_pos` = epoch << 40 | n, n
-- counting up from 0. `published_below` is the relay's watermark: every
-- command it committed below that position has been published, or its failure
-- is recorded in `outbox`. When a relay is gone (its node restarted, or it has
-- not been seen for a while), the commands at or above its watermark are
-- copied into `outbox` and its row is deleted; the sweep publishes them.
--
-- `outbox` now holds only those copies, the commands whose publishing failed
-- (with their retry state or as dead letters), and rows from before this
-- migration. The view `commands` is every command, wherever it is kept.
ALTER TABLE saga_events
    ADD COLUMN commands  jsonb,
    ADD COLUMN relay_pos bigint;
CREATE INDEX saga_events_relay ON saga_events (relay_pos) WHERE relay_pos IS NOT NULL;

CREATE TABLE relays (
    epoch           bigserial   PRIMARY KEY,
    node            text        NOT NULL,
    published_below bigint      NOT NULL,
    seen_at         timestamptz NOT NULL
);

-- A command kept on its event is published once its position is below its
-- relay's watermark, or its relay's row is gone (every command of a relay gone
-- was either below its watermark or copied into `outbox`). Its `sent_at` is
-- then the time of its step: the relay does not record each one's. (The
-- saga id is the event's, so that a query by saga finds its events by index.)
CREATE VIEW commands AS
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
    CROSS JOIN LATERAL jsonb_populate_recordset(NULL::outbox, e.commands) AS c
    LEFT JOIN relays r ON r.epoch = e.relay_pos >> 40
    WHERE e.commands IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = c.message_id);
