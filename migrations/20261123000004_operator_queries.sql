-- Operator search: newest first with keyset pagination on (created_at, id);
-- "stuck for" looks at unsettled sagas only, so that index stays as small as
-- the live work. A business key is found through the unique (saga_type,
-- business_key) index: search names the registered types. Every index here is
-- written on every step, so there are no more than these.
CREATE INDEX sagas_created ON sagas (created_at DESC, id DESC);
CREATE INDEX sagas_unsettled_updated ON sagas (updated_at)
    WHERE status IN ('running', 'compensating', 'suspended');

-- What became of a dead letter: redriven or discarded, by whom and why.
ALTER TABLE dead_letters
    ADD COLUMN resolution    text CHECK (resolution IN ('redriven', 'discarded')),
    ADD COLUMN resolved_by   text,
    ADD COLUMN resolved_note text,
    ADD COLUMN resolved_at   timestamptz;
CREATE INDEX dead_letters_open ON dead_letters (id) WHERE resolution IS NULL;
