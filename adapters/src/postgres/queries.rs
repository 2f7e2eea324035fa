//! [`EventStore`] on PostgreSQL. Saga steps go to the committer (group commit,
//! see `committer` and `batch`); everything else is a query here.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::leases::PARTITIONS;
use sagaplane_orchestrator::ports::{
    Backlog, CommitOutcome, DeadLetter, DueTimer, EventRecord, EventStore, OutboxMessage,
    PublishFailure, SagaRecord, StepCommit, StoreError, StoredHistory, SUSPENDED_BY_SUPERVISOR,
};
use sagaplane_sagas::SagaId;
use sqlx::PgPool;
use uuid::Uuid;

use super::committer::{Committer, GroupCommit};
use super::connect::{self, ConnectError};
use super::rows::{db, insert_dead_letter, OutboxRow, SagaRow, OUTBOX_COLUMNS, SAGA_COLUMNS};

/// The event store, read model, outbox, inbox, timers and dead letters on
/// PostgreSQL. Saga steps are written by its committer (group commit), on a
/// thread and connections of its own; everything else is a query on the pool.
pub struct PgEventStore {
    pool: PgPool,
    committer: Committer,
}

impl PgEventStore {
    /// A store on `pool`; its committer gets connections of its own, made with
    /// the pool's options.
    pub fn new(pool: PgPool, group_commit: GroupCommit) -> Self {
        let committer = Committer::start((*pool.connect_options()).clone(), group_commit);
        Self { pool, committer }
    }

    /// Connects to `url`, creating the database if it is missing and applying
    /// any migration not yet applied.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        group_commit: GroupCommit,
    ) -> Result<Self, ConnectError> {
        Ok(Self::new(
            connect::pool(url, max_connections).await?,
            group_commit,
        ))
    }

    /// The pool the queries run on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn load(&self, saga: SagaId) -> Result<Option<StoredHistory>, StoreError> {
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
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let Some((saga_type, traceparent, version, _, _)) = rows.first().cloned() else {
            return Ok(None);
        };
        // The supervisor's own events are not the saga's to fold.
        let events: Vec<serde_json::Value> = rows
            .into_iter()
            .filter(|(_, _, _, event_type, _)| {
                event_type.as_deref() != Some(SUSPENDED_BY_SUPERVISOR)
            })
            .filter_map(|(_, _, _, _, e)| e)
            .collect();
        Ok(Some(StoredHistory {
            saga_type,
            traceparent,
            version: version as u64,
            events,
        }))
    }

    async fn commit(&self, step: Arc<StepCommit>) -> Result<CommitOutcome, StoreError> {
        self.committer.commit(step).await
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
        insert_dead_letter(&self.pool, &letter).await
    }

    async fn unsent(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox \
             WHERE sent_at IS NULL AND dead_lettered_at IS NULL \
               AND (next_attempt_at <= $1 OR (next_attempt_at IS NULL AND created_at <= $2)) \
               AND ($4 >> partition) & 1 = 1 \
             ORDER BY message_id LIMIT $3"
        ))
        .bind(now)
        .bind(now - grace)
        .bind(limit)
        .bind(partitions as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn mark_sent(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        // The one write that does not wait for the disk (synchronous_commit off
        // for this transaction only): lost in a crash, the rows are published
        // again, which the idempotency key and the inbox make harmless.
        sqlx::query(
            "UPDATE outbox SET sent_at = now(), next_attempt_at = NULL \
             FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed \
             WHERE message_id = ANY($1) AND sent_at IS NULL",
        )
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn publish_failed(&self, failures: &[PublishFailure]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for failure in failures {
            match failure {
                PublishFailure::Retry {
                    message_id,
                    error,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET publish_attempts = publish_attempts + 1, \
                                last_error = $2, next_attempt_at = $3 \
                         WHERE message_id = $1 AND sent_at IS NULL",
                    )
                    .bind(message_id)
                    .bind(error)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                PublishFailure::DeadLetter {
                    message_id,
                    error,
                    letter,
                } => {
                    let moved = sqlx::query(
                        "UPDATE outbox SET publish_attempts = publish_attempts + 1, \
                                last_error = $2, next_attempt_at = NULL, dead_lettered_at = now() \
                         WHERE message_id = $1 AND sent_at IS NULL AND dead_lettered_at IS NULL",
                    )
                    .bind(message_id)
                    .bind(error)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    // Only the attempt that moved the row leaves a dead letter.
                    if moved == 1 {
                        insert_dead_letter(&mut *tx, letter).await?;
                    }
                }
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn requeue(&self, message_id: Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        let row: Option<OutboxRow> = sqlx::query_as(&format!(
            "UPDATE outbox SET publish_attempts = 0, next_attempt_at = NULL, \
                    dead_lettered_at = NULL \
             WHERE message_id = $1 AND sent_at IS NULL AND dead_lettered_at IS NOT NULL \
             RETURNING {OUTBOX_COLUMNS}"
        ))
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(Into::into))
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let rows: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, saga_type, wake_at FROM sagas \
             WHERE wake_at <= $1 AND ($3 >> partition) & 1 = 1 ORDER BY wake_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .bind(partitions as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(id, saga_type, wake_at)| DueTimer {
                saga_id: SagaId::from_uuid(id),
                saga_type,
                wake_at,
            })
            .collect())
    }

    async fn suspend(&self, saga: SagaId, reason: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
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

    async fn lease_partitions(
        &self,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let ttl = ttl.as_secs_f64();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO cluster_nodes (node, heartbeat_at) VALUES ($1, now()) \
             ON CONFLICT (node) DO UPDATE SET heartbeat_at = now()",
        )
        .bind(node)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cluster_nodes WHERE heartbeat_at > now() - make_interval(secs => $1)",
        )
        .bind(ttl)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let mut held: Vec<i32> = sqlx::query_scalar(
            "UPDATE partition_leases SET expires_at = now() + make_interval(secs => $2) \
             WHERE owner = $1 AND expires_at > now() RETURNING partition",
        )
        .bind(node)
        .bind(ttl)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let fair_share = (PARTITIONS as usize).div_ceil(live.max(1) as usize);
        if held.len() < fair_share {
            let taken: Vec<i32> = sqlx::query_scalar(
                "UPDATE partition_leases SET owner = $1, expires_at = now() + make_interval(secs => $2) \
                 WHERE partition IN (SELECT partition FROM partition_leases WHERE expires_at <= now() \
                                     ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING partition",
            )
            .bind(node)
            .bind(ttl)
            .bind((fair_share - held.len()) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            held.extend(taken);
        } else if held.len() > fair_share {
            // Another node joined: give back the extra ones for it to take.
            held.sort_unstable();
            let extra = held.split_off(fair_share);
            sqlx::query(
                "UPDATE partition_leases SET owner = NULL, expires_at = '-infinity' \
                 WHERE owner = $1 AND partition = ANY($2)",
            )
            .bind(node)
            .bind(&extra)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // Nodes gone for long are forgotten.
        sqlx::query("DELETE FROM cluster_nodes WHERE heartbeat_at < now() - interval '1 hour'")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(held.iter().fold(0u64, |mask, p| mask | 1 << p))
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

    async fn ready(&self) -> Result<(), String> {
        connect::ready(&self.pool).await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let (outbox_unsent, oldest_unsent_at, dead_letters) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND dead_lettered_at IS NULL), \
                    (SELECT min(created_at) FROM outbox \
                     WHERE sent_at IS NULL AND dead_lettered_at IS NULL), \
                    (SELECT count(*) FROM dead_letters WHERE resolution IS NULL)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Backlog {
            outbox_unsent,
            oldest_unsent_at,
            dead_letters,
        })
    }
}
