//! The outbox and dead letters: what the relay publishes, what it could not,
//! and what an operator puts back. Each function is the body of the
//! [`EventStore`](sagaplane_orchestrator::ports::EventStore) method of its name.

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    Backlog, DeadLetter, OutboxMessage, PublishFailure, StoreError,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::postgres::rows::{db, insert_dead_letter, OutboxRow, OUTBOX_COLUMNS};

pub(super) async fn unsent(
    pool: &PgPool,
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
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn mark_sent(pool: &PgPool, ids: &[Uuid]) -> Result<(), StoreError> {
    // The one write that does not wait for the disk (synchronous_commit off
    // for this transaction only): lost in a crash, the rows are published
    // again, which the idempotency key and the inbox make harmless.
    sqlx::query(
        "UPDATE outbox SET sent_at = now(), next_attempt_at = NULL \
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed \
         WHERE message_id = ANY($1) AND sent_at IS NULL",
    )
    .bind(ids)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn publish_failed(
    pool: &PgPool,
    failures: &[PublishFailure],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
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

pub(super) async fn requeue(
    pool: &PgPool,
    message_id: Uuid,
) -> Result<Option<OutboxMessage>, StoreError> {
    let row: Option<OutboxRow> = sqlx::query_as(&format!(
        "UPDATE outbox SET publish_attempts = 0, next_attempt_at = NULL, \
                dead_lettered_at = NULL \
         WHERE message_id = $1 AND sent_at IS NULL AND dead_lettered_at IS NOT NULL \
         RETURNING {OUTBOX_COLUMNS}"
    ))
    .bind(message_id)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    Ok(row.map(Into::into))
}

pub(super) async fn dead_letter(pool: &PgPool, letter: &DeadLetter) -> Result<(), StoreError> {
    insert_dead_letter(pool, letter).await
}

pub(super) async fn backlog(pool: &PgPool) -> Result<Backlog, StoreError> {
    let (outbox_unsent, oldest_unsent_at, dead_letters) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND dead_lettered_at IS NULL), \
                (SELECT min(created_at) FROM outbox \
                 WHERE sent_at IS NULL AND dead_lettered_at IS NULL), \
                (SELECT count(*) FROM dead_letters WHERE resolution IS NULL)",
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(Backlog {
        outbox_unsent,
        oldest_unsent_at,
        dead_letters,
    })
}
