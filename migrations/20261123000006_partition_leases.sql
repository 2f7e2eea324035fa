-- Scaling out: every saga belongs to one of 64 partitions (a hash of its id);
-- each partition is leased to one node at a time, and a node fires the timers
-- and sweeps the outbox of the partitions it holds. A node that dies stops
-- renewing; its leases expire and the others take them over.
CREATE TABLE cluster_nodes (
    node         text        PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL
);

CREATE TABLE partition_leases (
    partition  integer     PRIMARY KEY CHECK (partition BETWEEN 0 AND 63),
    owner      text,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO partition_leases (partition) SELECT generate_series(0, 63);

ALTER TABLE sagas ADD COLUMN partition integer
    GENERATED ALWAYS AS (hashtext(id::text) & 63) STORED;
ALTER TABLE outbox ADD COLUMN partition integer
    GENERATED ALWAYS AS (hashtext(saga_id::text) & 63) STORED;
