-- A saga's page shows the replies its inbox recorded beside the events they
-- caused: find them by saga.
CREATE INDEX inbox_saga ON inbox (saga_id);
