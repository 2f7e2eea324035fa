-- The relay's retries: failed attempts, when to try next, the last error, and
-- when a row ran out of budget (then it is a dead letter, for an operator).
ALTER TABLE outbox
    ADD COLUMN publish_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  timestamptz,
    ADD COLUMN last_error       text,
    ADD COLUMN dead_lettered_at timestamptz;
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (message_id)
    WHERE sent_at IS NULL AND dead_lettered_at IS NULL;

-- A dead letter is an inbound message that could not be used, or a command
-- that could not be delivered (then it names its outbox row).
ALTER TABLE dead_letters ADD COLUMN outbox_message_id uuid;
