//! The set-based statements of a batch, one per kind of row. Each writes its
//! rows for every step at once and, where a step can be left out, returns which
//! steps it applied.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{StepCommit, StoreError, EPOCH_SHIFT};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::postgres::rows::{db, StepOutcome};

/// Returns which of the messages were received before: applied (kept on
/// the event they caused) or ignored (kept in the inbox).
pub(super) async fn received_before(
    tx: &mut Transaction<'_, Postgres>,
    inbox: &[(usize, &str)],
) -> Result<HashSet<String>, StoreError> {
    if inbox.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<&str> = inbox.iter().map(|(_, id)| *id).collect();
    let found: Vec<String> =
        sqlx::query_scalar("SELECT message_id FROM received_messages WHERE message_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
    Ok(found.into_iter().collect())
}

/// The read-model columns of the steps still undecided, split by whether they
/// create their saga.
struct SagaRows<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    statuses: Vec<&'a str>,
    steps: Vec<Option<&'a str>>,
    attempts: Vec<Option<i32>>,
    since: Vec<Option<DateTime<Utc>>>,
    participants: Vec<Option<&'a str>>,
    budgets: Vec<Option<i32>>,
    versions: Vec<i64>,
    errors: Vec<Option<&'a str>>,
    wakes: Vec<Option<DateTime<Utc>>>,
    times: Vec<DateTime<Utc>>,
}

impl<'a> SagaRows<'a> {
    fn collect(steps: impl Iterator<Item = &'a StepCommit>) -> Self {
        let steps: Vec<&StepCommit> = steps.collect();
        Self {
            ids: steps.iter().map(|s| s.saga_id.as_uuid()).collect(),
            types: steps.iter().map(|s| s.saga_type.as_str()).collect(),
            statuses: steps.iter().map(|s| s.view.status.as_str()).collect(),
            steps: steps.iter().map(|s| s.view.step.as_deref()).collect(),
            attempts: steps
                .iter()
                .map(|s| s.view.attempt.map(|a| a as i32))
                .collect(),
            since: steps.iter().map(|s| s.view.step_since).collect(),
            participants: steps
                .iter()
                .map(|s| s.view.participant.as_deref())
                .collect(),
            budgets: steps
                .iter()
                .map(|s| s.view.max_attempts.map(|a| a as i32))
                .collect(),
            versions: steps.iter().map(|s| s.version() as i64).collect(),
            errors: steps.iter().map(|s| s.view.last_error.as_deref()).collect(),
            wakes: steps.iter().map(|s| s.view.wake_at).collect(),
            times: steps.iter().map(|s| s.at).collect(),
        }
    }
}

fn undecided<'a>(
    steps: &'a [Arc<StepCommit>],
    outcomes: &'a [Option<StepOutcome>],
    creating: bool,
) -> impl Iterator<Item = &'a StepCommit> {
    steps
        .iter()
        .zip(outcomes)
        .filter(move |(s, o)| o.is_none() && s.new_saga.is_some() == creating)
        .map(|(s, _)| s.as_ref())
}

/// Returns the ids of the sagas created.
pub(super) async fn insert_sagas(
    tx: &mut Transaction<'_, Postgres>,
    steps: &[Arc<StepCommit>],
    outcomes: &[Option<StepOutcome>],
) -> Result<HashSet<Uuid>, StoreError> {
    let mut new: Vec<&StepCommit> = undecided(steps, outcomes, true).collect();
    if new.is_empty() {
        return Ok(HashSet::new());
    }
    // One lock order on the business-key index for concurrent batches.
    new.sort_by_key(|s| {
        (
            s.saga_type.as_str(),
            s.new_saga.as_ref().map(|n| n.business_key.as_str()),
        )
    });
    let keys: Vec<&str> = new
        .iter()
        .filter_map(|s| s.new_saga.as_ref().map(|n| n.business_key.as_str()))
        .collect();
    let inputs: Vec<&serde_json::Value> = new
        .iter()
        .filter_map(|s| s.new_saga.as_ref().map(|n| &n.input))
        .collect();
    let traces: Vec<Option<&str>> = new
        .iter()
        .map(|s| s.new_saga.as_ref().and_then(|n| n.traceparent.as_deref()))
        .collect();
    let r = SagaRows::collect(new.into_iter());
    let created: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO sagas (id, saga_type, business_key, status, current_step, attempt, version, \
                            last_error, wake_at, created_at, updated_at, input, step_since, \
                            traceparent, participant, max_attempts) \
         SELECT i, ty, k, st, sp, a, v, e, w, t, t, inp, ss, tp, p, ma \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], \
                     $7::bigint[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::jsonb[], \
                     $12::timestamptz[], $13::text[], $14::text[], $15::int[]) \
              AS x(i, ty, k, st, sp, a, v, e, w, t, inp, ss, tp, p, ma) \
         ON CONFLICT (saga_type, business_key) DO NOTHING RETURNING id",
    )
    .bind(&r.ids)
    .bind(&r.types)
    .bind(&keys)
    .bind(&r.statuses)
    .bind(&r.steps)
    .bind(&r.attempts)
    .bind(&r.versions)
    .bind(&r.errors)
    .bind(&r.wakes)
    .bind(&r.times)
    .bind(&inputs)
    .bind(&r.since)
    .bind(&traces)
    .bind(&r.participants)
    .bind(&r.budgets)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    Ok(created.into_iter().collect())
}

/// Returns the ids of the sagas moved on from their expected version. The
/// `id = ANY($1)` lets the (generic, cached) plan find the rows by primary key
/// however large the table.
pub(super) async fn update_sagas(
    tx: &mut Transaction<'_, Postgres>,
    steps: &[Arc<StepCommit>],
    outcomes: &[Option<StepOutcome>],
) -> Result<HashSet<Uuid>, StoreError> {
    let existing: Vec<&StepCommit> = undecided(steps, outcomes, false).collect();
    if existing.is_empty() {
        return Ok(HashSet::new());
    }
    let expected: Vec<i64> = existing.iter().map(|s| s.expected_version as i64).collect();
    let r = SagaRows::collect(existing.into_iter());
    let updated: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE sagas s SET status = x.st, current_step = x.sp, attempt = x.a, version = x.v, \
                last_error = x.e, wake_at = x.w, updated_at = x.t, step_since = x.ss, \
                participant = x.p, max_attempts = x.ma \
         FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[], \
                     $7::bigint[], $8::text[], $9::timestamptz[], $10::timestamptz[], \
                     $11::timestamptz[], $12::text[], $13::int[]) \
              AS x(i, ty, ev, st, sp, a, v, e, w, t, ss, p, ma) \
         WHERE s.id = ANY($1) AND s.id = x.i AND s.saga_type = x.ty AND s.version = x.ev \
         RETURNING s.id",
    )
    .bind(&r.ids)
    .bind(&r.types)
    .bind(&expected)
    .bind(&r.statuses)
    .bind(&r.steps)
    .bind(&r.attempts)
    .bind(&r.versions)
    .bind(&r.errors)
    .bind(&r.wakes)
    .bind(&r.times)
    .bind(&r.since)
    .bind(&r.participants)
    .bind(&r.budgets)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    Ok(updated.into_iter().collect())
}

pub(super) async fn append_events(
    tx: &mut Transaction<'_, Postgres>,
    steps: &[&StepCommit],
) -> Result<(), StoreError> {
    let mut sagas = Vec::new();
    let mut seqs = Vec::new();
    let mut types = Vec::new();
    let mut data = Vec::new();
    let mut times = Vec::new();
    let mut messages = Vec::new();
    let mut commands = Vec::new();
    let mut positions = Vec::new();
    for step in steps {
        let logged = step.kept_on_event();
        for (n, event) in step.events.iter().enumerate() {
            let first = n == 0;
            sagas.push(step.saga_id.as_uuid());
            seqs.push(step.expected_version as i64 + n as i64 + 1);
            types.push(event.event_type.as_str());
            data.push(&event.data);
            times.push(event.at);
            messages.push(step.inbox.as_deref().filter(|_| first));
            commands.push(logged.filter(|_| first).map(|_| commands_json(step)));
            positions.push(logged.filter(|_| first).map(|pos| pos as i64));
        }
    }
    if sagas.is_empty() {
        return Ok(());
    }
    // The relays' rows, locked until the batch commits: a takeover (which
    // deletes the row) waits for it, and once a relay is taken over its steps
    // fail the batch, and then each their own commit (see `commit_one`).
    let mut epochs: Vec<i64> = positions
        .iter()
        .flatten()
        .map(|p| p >> EPOCH_SHIFT)
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    let held: i64 = sqlx::query_scalar(
        "WITH relay AS MATERIALIZED ( \
             SELECT epoch FROM relays WHERE epoch = ANY($9) ORDER BY epoch FOR KEY SHARE \
         ), ev AS ( \
             INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at, message_id, \
                                      commands, relay_pos) \
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::jsonb[], \
                                  $5::timestamptz[], $6::text[], $7::jsonb[], $8::bigint[]) \
         ) \
         SELECT count(*) FROM relay",
    )
    .bind(&sagas)
    .bind(&seqs)
    .bind(&types)
    .bind(&data)
    .bind(&times)
    .bind(&messages)
    .bind(&commands)
    .bind(&positions)
    .bind(&epochs)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    if held as usize != epochs.len() {
        return Err(StoreError::RelayGone);
    }
    Ok(())
}

/// A command as its step's first event keeps it: without what that event's
/// row holds or leads to (its saga, hence the saga's type; its time) and
/// without an idempotency key that is `<saga id>:<step>`. Each is written
/// only where the command's differs; `event_commands` (SQL) fills them in.
#[derive(Serialize)]
pub(super) struct KeptCommand<'a> {
    message_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    saga_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saga_type: Option<&'a str>,
    step: &'a str,
    attempt: u32,
    participant: &'a str,
    command_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
    data: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    publish_attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A step's commands as its first event keeps them.
pub(super) fn commands_json(step: &StepCommit) -> Json<Vec<KeptCommand<'_>>> {
    let at = step.events.first().map(|e| e.at);
    Json(
        step.outbox
            .iter()
            .map(|c| {
                let derived_key = c.idempotency_key == format!("{}:{}", step.saga_id, c.step);
                KeptCommand {
                    message_id: c.message_id,
                    saga_id: (c.saga_id != step.saga_id).then(|| c.saga_id.as_uuid()),
                    saga_type: (c.saga_type != step.saga_type).then_some(c.saga_type.as_str()),
                    step: &c.step,
                    attempt: c.attempt,
                    participant: &c.participant,
                    command_type: &c.command_type,
                    idempotency_key: (!derived_key).then_some(c.idempotency_key.as_str()),
                    data: &c.data,
                    created_at: (Some(c.created_at) != at).then_some(c.created_at),
                    traceparent: c.traceparent.as_deref(),
                    publish_attempts: c.publish_attempts,
                }
            })
            .collect(),
    )
}

/// The outbox rows of the steps whose commands are not kept on their events.
pub(super) async fn insert_outbox(
    tx: &mut Transaction<'_, Postgres>,
    steps: &[&StepCommit],
) -> Result<(), StoreError> {
    let messages: Vec<_> = steps
        .iter()
        .filter(|s| s.kept_on_event().is_none())
        .flat_map(|s| s.outbox.iter())
        .collect();
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| m.message_id).collect();
    let sagas: Vec<Uuid> = messages.iter().map(|m| m.saga_id.as_uuid()).collect();
    let saga_types: Vec<&str> = messages.iter().map(|m| m.saga_type.as_str()).collect();
    let step_names: Vec<&str> = messages.iter().map(|m| m.step.as_str()).collect();
    let attempts: Vec<i32> = messages.iter().map(|m| m.attempt as i32).collect();
    let participants: Vec<&str> = messages.iter().map(|m| m.participant.as_str()).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.command_type.as_str()).collect();
    let keys: Vec<&str> = messages
        .iter()
        .map(|m| m.idempotency_key.as_str())
        .collect();
    let data: Vec<&serde_json::Value> = messages.iter().map(|m| &m.data).collect();
    let created: Vec<DateTime<Utc>> = messages.iter().map(|m| m.created_at).collect();
    let traces: Vec<Option<&str>> = messages.iter().map(|m| m.traceparent.as_deref()).collect();
    sqlx::query(
        "INSERT INTO outbox (message_id, saga_id, saga_type, step, attempt, participant, \
                             command_type, idempotency_key, data, created_at, traceparent) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], \
                $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::timestamptz[], $11::text[])",
    )
    .bind(&ids)
    .bind(&sagas)
    .bind(&saga_types)
    .bind(&step_names)
    .bind(&attempts)
    .bind(&participants)
    .bind(&types)
    .bind(&keys)
    .bind(&data)
    .bind(&created)
    .bind(&traces)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}
