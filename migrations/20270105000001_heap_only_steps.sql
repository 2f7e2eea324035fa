-- A step rewrites its saga's row. PostgreSQL can do that in place, without a
-- new entry in every index of `sagas` (a heap-only update), only when no
-- indexed column changes and the page has room. Every step changes `wake_at`
-- (its new deadline) and `updated_at`, so both leave the indexes:
--
-- * Timers are found by `wake_slot`, the deadline rounded down to 10 s, which
--   a step leaves as it was unless its deadline moves to another slot. The
--   poll reads the due slots and checks `wake_at` itself.
-- * The unsettled sagas are indexed by `created_at`, which never changes; the
--   stuck list and the counts read that index and check `updated_at`.
--
-- Pages are left 30 % free for the updated rows. Adding the column rewrites
-- the table once, under an exclusive lock.
ALTER TABLE sagas SET (fillfactor = 70);
ALTER TABLE sagas ADD COLUMN wake_slot timestamptz
    GENERATED ALWAYS AS (date_bin('10 seconds', wake_at, timestamptz '2000-01-01 00:00:00+00')) STORED;
DROP INDEX sagas_wake_at;
CREATE INDEX sagas_wake_slot ON sagas (wake_slot) WHERE wake_slot IS NOT NULL;
DROP INDEX sagas_unsettled_updated;
CREATE INDEX sagas_unsettled_created ON sagas (created_at, id)
    WHERE status IN ('running', 'compensating', 'suspended');
