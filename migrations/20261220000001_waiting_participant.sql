-- The saga list shows who must answer each saga's current step and the step's
-- attempt budget from the read model itself, as every step writes them (not
-- from folding each listed saga's history). Rows written before this migration
-- hold NULL until their saga's next step.
ALTER TABLE sagas
    ADD COLUMN participant  text,
    ADD COLUMN max_attempts integer;
