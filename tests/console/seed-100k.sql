-- 100,000 sagas for the console's render measurement (BENCHMARKS.md, "Console"):
-- copies of two real sagas, `seed-completed` and `seed-suspended` (started
-- through the API first), 1 in 100 suspended, one a second into the past.
CREATE TEMP TABLE copies AS
SELECT g, gen_random_uuid() AS id, now() - make_interval(secs => g) AS at,
       CASE WHEN g % 100 = 0 THEN 'seed-suspended' ELSE 'seed-completed' END AS model
FROM generate_series(1, 100000) g;
INSERT INTO sagas (id, saga_type, business_key, status, current_step, attempt, version, input,
                   last_error, wake_at, created_at, updated_at, step_since, traceparent,
                   participant, max_attempts)
SELECT c.id, s.saga_type, 'bench-' || c.g, s.status, s.current_step, s.attempt, s.version, s.input,
       s.last_error, s.wake_at, c.at, c.at, s.step_since, s.traceparent,
       s.participant, s.max_attempts
FROM copies c JOIN sagas s ON s.business_key = c.model;
INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at)
SELECT c.id, e.seq, e.event_type, e.data, e.recorded_at
FROM copies c JOIN sagas s ON s.business_key = c.model JOIN saga_events e ON e.saga_id = s.id;
ANALYZE;
