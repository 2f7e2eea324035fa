-- Read model: one row per saga, updated in the same transaction as its events.
CREATE TABLE sagas (
    id            uuid        PRIMARY KEY,
    saga_type     text        NOT NULL,
    business_key  text        NOT NULL,
    status        text        NOT NULL,
    current_step  text,
    attempt       integer,
    version       bigint      NOT NULL,
    input         jsonb       NOT NULL,
    last_error    text,
    -- The saga's next deadline or retry time: its durable timer.
    wake_at       timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT sagas_business_key UNIQUE (saga_type, business_key)
);
CREATE INDEX sagas_wake_at ON sagas (wake_at) WHERE wake_at IS NOT NULL;

-- The history: append-only; (saga_id, seq) makes a stale append fail.
CREATE TABLE saga_events (
    saga_id     uuid        NOT NULL,
    seq         bigint      NOT NULL,
    event_type  text        NOT NULL,
    data        jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

-- Commands committed with the step that decided them, published afterwards.
CREATE TABLE outbox (
    message_id      uuid        PRIMARY KEY,
    saga_id         uuid        NOT NULL,
    saga_type       text        NOT NULL,
    step            text        NOT NULL,
    attempt         integer     NOT NULL,
    participant     text        NOT NULL,
    command_type    text        NOT NULL,
    idempotency_key text        NOT NULL,
    data            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX outbox_unsent ON outbox (message_id) WHERE sent_at IS NULL;
CREATE INDEX outbox_saga ON outbox (saga_id);

-- Every inbound message handled, applied or not: the de-duplication record.
CREATE TABLE inbox (
    message_id  text        PRIMARY KEY,
    saga_id     uuid        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('applied', 'ignored')),
    detail      text,
    received_at timestamptz NOT NULL
);

-- Inbound messages that could not be used, kept whole.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    channel     text        NOT NULL,
    reason      text        NOT NULL,
    raw         bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now()
);
