//! The bottom of the store: how a database error becomes a [`StoreError`], the
//! rows read back into the port's records, and what every write shares.

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    CommitOutcome, DeadLetter, OutboxMessage, SagaRecord, StoreError,
};
use sagaplane_sagas::SagaId;
use uuid::Uuid;

/// SQLSTATE unique_violation.
const UNIQUE_VIOLATION: &str = "23505";

/// What became of one step, written alone or in a batch.
pub(super) type StepOutcome = Result<CommitOutcome, StoreError>;

/// A unique violation is a lost race ([`StoreError::Conflict`]); anything else
/// is the database failing.
pub(super) fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            StoreError::Conflict
        }
        _ => StoreError::Database(Box::new(e)),
    }
}

/// The columns of [`SagaRow`], in its order.
pub(super) const SAGA_COLUMNS: &str =
    "id, saga_type, business_key, status, current_step, attempt, \
     step_since, participant, max_attempts, version, input, last_error, wake_at, \
     created_at, updated_at, traceparent";

/// A row of `sagas` (the read model).
#[derive(sqlx::FromRow)]
pub(super) struct SagaRow {
    id: Uuid,
    saga_type: String,
    business_key: String,
    status: String,
    current_step: Option<String>,
    attempt: Option<i32>,
    step_since: Option<DateTime<Utc>>,
    participant: Option<String>,
    max_attempts: Option<i32>,
    version: i64,
    input: serde_json::Value,
    last_error: Option<String>,
    wake_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    traceparent: Option<String>,
}

impl From<SagaRow> for SagaRecord {
    fn from(r: SagaRow) -> Self {
        SagaRecord {
            id: SagaId::from_uuid(r.id),
            saga_type: r.saga_type,
            business_key: r.business_key,
            status: r.status,
            current_step: r.current_step,
            attempt: r.attempt,
            step_since: r.step_since,
            participant: r.participant,
            max_attempts: r.max_attempts,
            version: r.version,
            input: r.input,
            last_error: r.last_error,
            wake_at: r.wake_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            traceparent: r.traceparent,
        }
    }
}

/// The columns of [`OutboxRow`], in its order.
pub(super) const OUTBOX_COLUMNS: &str =
    "message_id, saga_id, saga_type, step, attempt, participant, \
     command_type, idempotency_key, data, created_at, traceparent, publish_attempts";

/// A row of `outbox`.
#[derive(sqlx::FromRow)]
pub(super) struct OutboxRow {
    message_id: Uuid,
    saga_id: Uuid,
    saga_type: String,
    step: String,
    attempt: i32,
    participant: String,
    command_type: String,
    idempotency_key: String,
    data: serde_json::Value,
    created_at: DateTime<Utc>,
    traceparent: Option<String>,
    publish_attempts: i32,
}

impl From<OutboxRow> for OutboxMessage {
    fn from(r: OutboxRow) -> Self {
        OutboxMessage {
            message_id: r.message_id,
            saga_id: SagaId::from_uuid(r.saga_id),
            saga_type: r.saga_type,
            step: r.step,
            attempt: r.attempt as u32,
            participant: r.participant,
            command_type: r.command_type,
            idempotency_key: r.idempotency_key,
            data: r.data,
            created_at: r.created_at,
            traceparent: r.traceparent,
            publish_attempts: r.publish_attempts.max(0) as u32,
        }
    }
}

/// Records `letter`, on the pool or inside a caller's transaction.
pub(super) async fn insert_dead_letter<'e, E>(
    executor: E,
    letter: &DeadLetter,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query(
        "INSERT INTO dead_letters (channel, reason, raw, headers, outbox_message_id) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&letter.channel)
    .bind(&letter.reason)
    .bind(&letter.raw)
    .bind(&letter.headers)
    .bind(letter.outbox_message_id)
    .execute(executor)
    .await
    .map_err(db)?;
    Ok(())
}
