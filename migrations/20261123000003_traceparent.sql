-- W3C trace context: the saga's (from its start request) and each command's.
ALTER TABLE sagas ADD COLUMN traceparent text;
ALTER TABLE outbox ADD COLUMN traceparent text;
