//! Timers, partition leases and retention: which sagas are due to wake,
//! which partitions of them (and of the outbox) this node sweeps, and which
//! finished sagas it deletes. Each function is
//! the body of the [`EventStore`](sagaplane_orchestrator::ports::EventStore)
//! method of its name.

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::leases::PARTITIONS;
use sagaplane_orchestrator::ports::{DueTimer, StoreError};
use sagaplane_sagas::SagaId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::postgres::rows::db;

pub(super) async fn due(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
    partitions: u64,
) -> Result<Vec<DueTimer>, StoreError> {
    // Timers are indexed by their 10-second slot (`wake_slot`, which a
    // step leaves unchanged, so its update stays heap-only): the scan reads
    // the due slots in order and checks `wake_at` itself, and the sort within
    // a slot is incremental, so the limit stops it early. A slot is never
    // later than its deadline, so every due timer is in a due slot.
    //
    // A step that moves a deadline to another slot leaves its row's earlier
    // version behind in the index until vacuum. An index scan in slot order
    // marks such entries dead as it passes them, so each is visited once; a
    // bitmap scan, which the planner picks when it expects few of the due rows
    // to be this node's, would visit all of them at every poll.
    let mut tx = pool.begin().await.map_err(db)?;
    // Nor a scan of the whole table and a sort: the index gives the order.
    sqlx::query(
        "SELECT set_config('enable_bitmapscan', 'off', true), \
                set_config('enable_seqscan', 'off', true)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let rows: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, saga_type, wake_at FROM sagas \
         WHERE wake_slot <= $1 AND wake_at <= $1 AND ($3 >> partition) & 1 = 1 \
         ORDER BY wake_slot, wake_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .bind(partitions as i64)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|(id, saga_type, wake_at)| DueTimer {
            saga_id: SagaId::from_uuid(id),
            saga_type,
            wake_at,
        })
        .collect())
}

pub(super) async fn lease_partitions(
    pool: &PgPool,
    node: &str,
    ttl: std::time::Duration,
) -> Result<u64, StoreError> {
    let ttl = ttl.as_secs_f64();
    let mut tx = pool.begin().await.map_err(db)?;
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

/// Finds the oldest finished sagas through `sagas_created` (a saga ends
/// after it is created, so `created_at` bounds the scan), locks them against
/// a second node doing the same, and deletes their rows in one statement.
/// Dead letters stay: they are an operator's record.
pub(super) async fn purge_finished(
    pool: &PgPool,
    ended_before: DateTime<Utc>,
    limit: i64,
    partitions: u64,
) -> Result<u64, StoreError> {
    let deleted = sqlx::query(
        "WITH doomed AS ( \
             SELECT id FROM sagas \
             WHERE created_at < $1 AND updated_at < $1 \
               AND status IN ('completed', 'compensated', 'cancelled') \
               AND ($3 >> partition) & 1 = 1 \
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
         events AS (DELETE FROM saga_events WHERE saga_id IN (SELECT id FROM doomed)), \
         commands AS (DELETE FROM outbox WHERE saga_id IN (SELECT id FROM doomed)), \
         replies AS (DELETE FROM inbox WHERE saga_id IN (SELECT id FROM doomed)) \
         DELETE FROM sagas WHERE id IN (SELECT id FROM doomed)",
    )
    .bind(ended_before)
    .bind(limit)
    .bind(partitions as i64)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(deleted.rows_affected())
}
