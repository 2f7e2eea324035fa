//! History and steps: a saga's events, its read-model row, the messages it
//! ignored, and the supervisor's suspension. Each function is the body of the
//! [`EventStore`](sagaplane_orchestrator::ports::EventStore) method of its
//! name; the steps themselves are written by the committer.

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    EventRecord, SagaRecord, StoreError, StoredHistory, SUSPENDED_BY_SUPERVISOR,
};
use sagaplane_sagas::SagaId;
use sqlx::PgPool;

use crate::postgres::rows::{db, SagaRow, SAGA_COLUMNS};

pub(super) async fn load(pool: &PgPool, saga: SagaId) -> Result<Option<StoredHistory>, StoreError> {
    // One statement, so the type and the events come from one snapshot.
    type Row = (
        String,
        Option<String>,
        i64,
        Option<String>,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.saga_type, s.traceparent, s.version, e.event_type, e.data FROM sagas s \
         LEFT JOIN saga_events e ON e.saga_id = s.id \
         WHERE s.id = $1 ORDER BY e.seq",
    )
    .bind(saga.as_uuid())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let Some((saga_type, traceparent, version, _, _)) = rows.first().cloned() else {
        return Ok(None);
    };
    // The supervisor's own events are not the saga's to fold.
    let events: Vec<serde_json::Value> = rows
        .into_iter()
        .filter(|(_, _, _, event_type, _)| event_type.as_deref() != Some(SUSPENDED_BY_SUPERVISOR))
        .filter_map(|(_, _, _, _, e)| e)
        .collect();
    Ok(Some(StoredHistory {
        saga_type,
        traceparent,
        version: version as u64,
        events,
    }))
}

pub(super) async fn record_ignored(
    pool: &PgPool,
    message_id: &str,
    saga: SagaId,
    detail: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        // Only while the saga exists: retention may just have deleted it
        // (with its inbox rows), and a row for it now would never go. A
        // message that was applied is on its event instead: a duplicate.
        "INSERT INTO inbox (message_id, saga_id, outcome, detail, received_at) \
         SELECT $1, $2, 'ignored', $3, now() WHERE EXISTS (SELECT 1 FROM sagas WHERE id = $2) \
           AND NOT EXISTS (SELECT 1 FROM saga_events WHERE message_id = $1) \
         ON CONFLICT DO NOTHING",
    )
    .bind(message_id)
    .bind(saga.as_uuid())
    .bind(detail)
    .execute(pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(inserted == 1)
}

pub(super) async fn suspend(pool: &PgPool, saga: SagaId, reason: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE sagas SET status = 'suspended', last_error = $2, wake_at = NULL, \
                version = version + 1, updated_at = now() \
         WHERE id = $1 AND status IN ('running', 'compensating') RETURNING version",
    )
    .bind(saga.as_uuid())
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(version) = version else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at) \
         VALUES ($1, $2, $3, $4, now())",
    )
    .bind(saga.as_uuid())
    .bind(version)
    .bind(SUSPENDED_BY_SUPERVISOR)
    .bind(serde_json::json!({ "reason": reason }))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

pub(super) async fn saga_type(pool: &PgPool, saga: SagaId) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT saga_type FROM sagas WHERE id = $1")
        .bind(saga.as_uuid())
        .fetch_optional(pool)
        .await
        .map_err(db)
}

pub(super) async fn get(pool: &PgPool, saga: SagaId) -> Result<Option<SagaRecord>, StoreError> {
    let row: Option<SagaRow> =
        sqlx::query_as(&format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE id = $1"))
            .bind(saga.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(db)?;
    Ok(row.map(Into::into))
}

pub(super) async fn find_by_key(
    pool: &PgPool,
    saga_type: &str,
    business_key: &str,
) -> Result<Option<SagaRecord>, StoreError> {
    let row: Option<SagaRow> = sqlx::query_as(&format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_type = $1 AND business_key = $2"
    ))
    .bind(saga_type)
    .bind(business_key)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    Ok(row.map(Into::into))
}

pub(super) async fn events(pool: &PgPool, saga: SagaId) -> Result<Vec<EventRecord>, StoreError> {
    let rows: Vec<(i64, String, serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT seq, event_type, data, recorded_at FROM saga_events \
         WHERE saga_id = $1 ORDER BY seq",
    )
    .bind(saga.as_uuid())
    .fetch_all(pool)
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
