-- Operator search: newest first, by status or type, with keyset pagination on
-- (created_at, id); "stuck for" looks at unsettled sagas only, so that index
-- stays as small as the live work.
CREATE INDEX sagas_created ON sagas (created_at DESC, id DESC);
CREATE INDEX sagas_status_created ON sagas (status, created_at DESC, id DESC);
CREATE INDEX sagas_by_business_key ON sagas (business_key);
CREATE INDEX sagas_unsettled_updated ON sagas (updated_at)
    WHERE status IN ('running', 'compensating', 'suspended');

-- What became of a dead letter: redriven or discarded, by whom and why.
ALTER TABLE dead_letters
    ADD COLUMN resolution    text CHECK (resolution IN ('redriven', 'discarded')),
    ADD COLUMN resolved_by   text,
    ADD COLUMN resolved_note text,
    ADD COLUMN resolved_at   timestamptz;
CREATE INDEX dead_letters_open ON dead_letters (id) WHERE resolution IS NULL;
