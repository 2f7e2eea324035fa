-- Saga definitions, one row per version of a type: stored when first loaded,
-- never changed, so a saga runs under its version to its end on every node.
CREATE TABLE saga_definitions (
    saga_type  text        NOT NULL,
    version    integer     NOT NULL CHECK (version > 0),
    hash       text        NOT NULL,
    -- The file it was first loaded from.
    source     text        NOT NULL,
    document   jsonb       NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_type, version)
);
