//! [`EventStore`] on PostgreSQL: each step is one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    CommitOutcome, DeadLetter, EventRecord, EventStore, OutboxMessage, SagaRecord, StepCommit,
    StoreError, StoredHistory,
};
use sagaplane_sagas::SagaId;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// SQLSTATE unique_violation.
const UNIQUE_VIOLATION: &str = "23505";

pub struct PgEventStore {
    pool: PgPool,
}

impl PgEventStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            StoreError::Conflict
        }
        _ => StoreError::Database(Box::new(e)),
    }
}

const SAGA_COLUMNS: &str = "id, saga_type, business_key, status, current_step, attempt, \
     version, input, last_error, wake_at, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct SagaRow {
    id: Uuid,
    saga_type: String,
    business_key: String,
    status: String,
    current_step: Option<String>,
    attempt: Option<i32>,
    version: i64,
    input: serde_json::Value,
    last_error: Option<String>,
    wake_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
            version: r.version,
            input: r.input,
            last_error: r.last_error,
            wake_at: r.wake_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
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
        }
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn load(&self, saga: SagaId) -> Result<Option<StoredHistory>, StoreError> {
        // One statement, so the type and the events come from one snapshot.
        let rows: Vec<(String, Option<serde_json::Value>)> = sqlx::query_as(
            "SELECT s.saga_type, e.data FROM sagas s \
             LEFT JOIN saga_events e ON e.saga_id = s.id \
             WHERE s.id = $1 ORDER BY e.seq",
        )
        .bind(saga.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let Some((saga_type, _)) = rows.first() else {
            return Ok(None);
        };
        let saga_type = saga_type.clone();
        let events: Vec<serde_json::Value> = rows.into_iter().filter_map(|(_, e)| e).collect();
        Ok(Some(StoredHistory {
            saga_type,
            version: events.len() as u64,
            events,
        }))
    }

    async fn commit(&self, step: &StepCommit) -> Result<CommitOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(message_id) = &step.inbox {
            let inserted = sqlx::query(
                "INSERT INTO inbox (message_id, saga_id, outcome, received_at) \
                 VALUES ($1, $2, 'applied', $3) ON CONFLICT DO NOTHING",
            )
            .bind(message_id)
            .bind(step.saga_id.as_uuid())
            .bind(step.at)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if inserted == 0 {
                return Ok(CommitOutcome::DuplicateInbox);
            }
        }
        if !write_saga_row(&mut tx, step).await? {
            return match step.new_saga {
                Some(_) => Ok(CommitOutcome::BusinessKeyTaken),
                None => Err(StoreError::Conflict),
            };
        }
        append_events(&mut tx, step).await?;
        insert_outbox(&mut tx, step).await?;
        tx.commit().await.map_err(db)?;
        Ok(CommitOutcome::Committed)
    }

    async fn record_ignored(
        &self,
        message_id: &str,
        saga: SagaId,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO inbox (message_id, saga_id, outcome, detail, received_at) \
             VALUES ($1, $2, 'ignored', $3, now()) ON CONFLICT DO NOTHING",
        )
        .bind(message_id)
        .bind(saga.as_uuid())
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dead_letters (channel, reason, raw, headers) VALUES ($1, $2, $3, $4)",
        )
        .bind(&letter.channel)
        .bind(&letter.reason)
        .bind(&letter.raw)
        .bind(&letter.headers)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn unsent(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT message_id, saga_id, saga_type, step, attempt, participant, command_type, \
                    idempotency_key, data, created_at \
             FROM outbox WHERE sent_at IS NULL AND created_at < $1 \
             ORDER BY message_id LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn mark_sent(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET sent_at = now() WHERE message_id = ANY($1) AND sent_at IS NULL",
        )
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(SagaId, String)>, StoreError> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, saga_type FROM sagas WHERE wake_at <= $1 ORDER BY wake_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(id, t)| (SagaId::from_uuid(id), t))
            .collect())
    }

    async fn saga_type(&self, saga: SagaId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT saga_type FROM sagas WHERE id = $1")
            .bind(saga.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn get(&self, saga: SagaId) -> Result<Option<SagaRecord>, StoreError> {
        let row: Option<SagaRow> =
            sqlx::query_as(&format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE id = $1"))
                .bind(saga.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(row.map(Into::into))
    }

    async fn find_by_key(
        &self,
        saga_type: &str,
        business_key: &str,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let row: Option<SagaRow> = sqlx::query_as(&format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_type = $1 AND business_key = $2"
        ))
        .bind(saga_type)
        .bind(business_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(Into::into))
    }

    async fn events(&self, saga: SagaId) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<(i64, String, serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
            "SELECT seq, event_type, data, recorded_at FROM saga_events \
             WHERE saga_id = $1 ORDER BY seq",
        )
        .bind(saga.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(seq, event_type, data, recorded_at)| EventRecord {
                seq,
                event_type,
                data,
                recorded_at,
            })
            .collect())
    }
}

/// Inserts a new saga's row or moves an existing one on from the expected
/// version; `false` when the business key is taken or the version moved.
async fn write_saga_row(
    tx: &mut Transaction<'_, Postgres>,
    step: &StepCommit,
) -> Result<bool, StoreError> {
    let v = &step.view;
    let version = (step.expected_version + step.events.len() as u64) as i64;
    let query = match &step.new_saga {
        Some(new) => sqlx::query(
            "INSERT INTO sagas (id, saga_type, business_key, status, current_step, attempt, \
                                version, last_error, wake_at, created_at, updated_at, input) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
             ON CONFLICT (saga_type, business_key) DO NOTHING",
        )
        .bind(step.saga_id.as_uuid())
        .bind(step.saga_type)
        .bind(&new.business_key),
        None => sqlx::query(
            "UPDATE sagas SET status = $4, current_step = $5, attempt = $6, version = $7, \
                    last_error = $8, wake_at = $9, updated_at = $10 \
             WHERE id = $1 AND saga_type = $2 AND version = $3",
        )
        .bind(step.saga_id.as_uuid())
        .bind(step.saga_type)
        .bind(step.expected_version as i64),
    };
    let mut query = query
        .bind(v.status.as_str())
        .bind(v.step)
        .bind(v.attempt.map(|a| a as i32))
        .bind(version)
        .bind(v.last_error.as_deref())
        .bind(v.wake_at)
        .bind(step.at);
    if let Some(new) = &step.new_saga {
        query = query.bind(&new.input);
    }
    let written = query.execute(&mut **tx).await.map_err(db)?.rows_affected();
    Ok(written == 1)
}

async fn append_events(
    tx: &mut Transaction<'_, Postgres>,
    step: &StepCommit,
) -> Result<(), StoreError> {
    let first = step.expected_version as i64 + 1;
    let seqs: Vec<i64> = (first..first + step.events.len() as i64).collect();
    let types: Vec<&str> = step.events.iter().map(|e| e.event_type).collect();
    let data: Vec<&serde_json::Value> = step.events.iter().map(|e| &e.data).collect();
    let times: Vec<DateTime<Utc>> = step.events.iter().map(|e| e.at).collect();
    sqlx::query(
        "INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::jsonb[], $5::timestamptz[])",
    )
    .bind(step.saga_id.as_uuid())
    .bind(&seqs)
    .bind(&types)
    .bind(&data)
    .bind(&times)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

async fn insert_outbox(
    tx: &mut Transaction<'_, Postgres>,
    step: &StepCommit,
) -> Result<(), StoreError> {
    if step.outbox.is_empty() {
        return Ok(());
    }
    let o = &step.outbox;
    let ids: Vec<Uuid> = o.iter().map(|m| m.message_id).collect();
    let steps: Vec<&str> = o.iter().map(|m| m.step.as_str()).collect();
    let attempts: Vec<i32> = o.iter().map(|m| m.attempt as i32).collect();
    let participants: Vec<&str> = o.iter().map(|m| m.participant.as_str()).collect();
    let types: Vec<&str> = o.iter().map(|m| m.command_type.as_str()).collect();
    let keys: Vec<&str> = o.iter().map(|m| m.idempotency_key.as_str()).collect();
    let data: Vec<&serde_json::Value> = o.iter().map(|m| &m.data).collect();
    let created: Vec<DateTime<Utc>> = o.iter().map(|m| m.created_at).collect();
    sqlx::query(
        "INSERT INTO outbox (message_id, saga_id, saga_type, step, attempt, participant, \
                             command_type, idempotency_key, data, created_at) \
         SELECT m, $2, $3, s, a, p, t, k, d, c FROM UNNEST($1::uuid[], $4::text[], $5::int[], \
                $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::timestamptz[]) \
                AS x(m, s, a, p, t, k, d, c)",
    )
    .bind(&ids)
    .bind(step.saga_id.as_uuid())
    .bind(step.saga_type)
    .bind(&steps)
    .bind(&attempts)
    .bind(&participants)
    .bind(&types)
    .bind(&keys)
    .bind(&data)
    .bind(&created)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}
