//! The outbox and dead letters: what the relay publishes, what it could not,
//! and what an operator puts back. Each function is the body of the
//! [`EventStore`](sagaplane_orchestrator::ports::EventStore) method of its name.

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    Backlog, DeadLetter, OutboxMessage, PublishFailure, StoreError, EPOCH_SHIFT,
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

/// The outbox columns of a command kept on its event (`event_commands`).
const COMMAND_COLUMNS: &str = "message_id, saga_id, saga_type, step, attempt, participant, \
     command_type, idempotency_key, data, created_at, traceparent";

/// Copies into the outbox the commands kept on the events (`e`, of
/// `saga_events`) that `from` and `condition` select, those not there already.
fn copy_commands(from: &str, condition: &str) -> String {
    format!(
        "INSERT INTO outbox ({COMMAND_COLUMNS}) \
         SELECT {c} FROM {from} \
         CROSS JOIN LATERAL event_commands(e) AS c \
         WHERE {condition} \
         ON CONFLICT (message_id) DO NOTHING",
        c = COMMAND_COLUMNS
            .split(", ")
            .map(|col| format!("c.{col}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(super) async fn open_relay(pool: &PgPool, node: &str) -> Result<u64, StoreError> {
    let epoch: i64 = sqlx::query_scalar(
        "INSERT INTO relays (epoch, node, published_below, seen_at) \
         SELECT e, $1, e << 40, now() FROM (SELECT nextval('relays_epoch_seq') AS e) AS n \
         RETURNING epoch",
    )
    .bind(node)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(epoch as u64)
}

pub(super) async fn relay_published(
    pool: &PgPool,
    epoch: u64,
    node: &str,
    below: u64,
) -> Result<(), StoreError> {
    // Lost in a crash (the commit does not wait for the disk), the watermark
    // is an older one, and what lies above it is published again.
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO relays (epoch, node, published_below, seen_at) \
         SELECT $1, $2, $3, now() FROM (SELECT set_config('synchronous_commit', 'off', true)) AS r \
         ON CONFLICT (epoch) DO UPDATE \
         SET published_below = GREATEST(relays.published_below, EXCLUDED.published_below), \
             seen_at = now() \
         RETURNING xmax = 0",
    )
    .bind(epoch as i64)
    .bind(node)
    .bind(below as i64)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    if inserted {
        // Another node took it for gone and published what it had not; from
        // here on it is this relay's again.
        tracing::warn!(epoch, "this relay was taken over as gone; recorded again");
    }
    Ok(())
}

pub(super) async fn recover_relays(
    pool: &PgPool,
    epoch: u64,
    node: &str,
    dead_after: std::time::Duration,
) -> Result<u64, StoreError> {
    static COPY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        copy_commands(
            "UNNEST($1::bigint[], $2::bigint[]) AS gone(epoch, published_below) \
             JOIN saga_events e ON e.relay_pos >= gone.published_below \
              AND e.relay_pos < (gone.epoch + 1) << 40",
            "e.commands IS NOT NULL",
        )
    });
    let mut tx = pool.begin().await.map_err(db)?;
    // Deleting a relay's row waits for its steps being committed (each holds
    // the row until it commits), and a step after the delete writes nothing;
    // the copy, a statement later, sees every step the relay ever committed.
    // (One lock order, for two nodes taking over the same relays.)
    let gone: Vec<(i64, i64)> = sqlx::query_as(
        "DELETE FROM relays WHERE epoch IN ( \
             SELECT epoch FROM relays \
             WHERE epoch <> $1 AND (node = $2 OR seen_at < now() - make_interval(secs => $3)) \
             ORDER BY epoch FOR UPDATE \
         ) RETURNING epoch, published_below",
    )
    .bind(epoch as i64)
    .bind(node)
    .bind(dead_after.as_secs_f64())
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    if gone.is_empty() {
        return Ok(0);
    }
    let (epochs, below): (Vec<i64>, Vec<i64>) = gone.into_iter().unzip();
    let copied = sqlx::query(COPY.as_str())
        .bind(&epochs)
        .bind(&below)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    tx.commit().await.map_err(db)?;
    Ok(copied)
}

/// How long a lookup after a commit of unknown outcome waits for step
/// statements that were running when it began.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) async fn recover_positions(pool: &PgPool, positions: &[u64]) -> Result<(), StoreError> {
    let positions: Vec<i64> = positions.iter().map(|p| *p as i64).collect();
    let mut epochs: Vec<i64> = positions.iter().map(|p| p >> EPOCH_SHIFT).collect();
    epochs.sort_unstable();
    epochs.dedup();
    // A broken connection does not stop the statement its server received:
    // wait for the step writers' statements that began before this lookup
    // (those of this process's committer are named after this pool's
    // connections, with `/commit`), at most `IN_FLIGHT_WAIT`. Began: their
    // transaction did, at the statement's bind. `query_start` would not do:
    // PostgreSQL sets it again at the execute that follows, so a statement
    // whose bind waited for a lock (planning it takes the table's locks) looks
    // newer than the lookup just when it goes on to write.
    let since: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    let waiting = tokio::time::Instant::now();
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'active' AND xact_start < $1 \
               AND application_name = current_setting('application_name') || '/commit'",
        )
        .bind(since)
        .fetch_one(pool)
        .await
        .map_err(db)?;
        if running == 0 || waiting.elapsed() > IN_FLIGHT_WAIT {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut tx = pool.begin().await.map_err(db)?;
    // A step still being committed holds its relay's row until it is done:
    // wait for it, so that the copy sees it if it was written.
    sqlx::query("SELECT 1 FROM relays WHERE epoch = ANY($1) ORDER BY epoch FOR UPDATE")
        .bind(&epochs)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(&copy_commands("saga_events e", "e.relay_pos = ANY($1)"))
        .bind(&positions)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

pub(super) async fn publish_failed(
    pool: &PgPool,
    failures: &[PublishFailure],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    for failure in failures {
        let command = serde_json::to_value(failure.message()).expect("commands serialise");
        // A command kept on its event gets its outbox row on its first failure.
        let row = format!(
            "INSERT INTO outbox ({COMMAND_COLUMNS}, publish_attempts, last_error, \
                                 next_attempt_at, dead_lettered_at) \
             SELECT {COMMAND_COLUMNS}, 1, $2, $3, CASE WHEN $4 THEN now() END \
             FROM jsonb_populate_record(NULL::outbox, $1)"
        );
        match failure {
            PublishFailure::Retry { error, at, .. } => {
                sqlx::query(&format!(
                    "{row} ON CONFLICT (message_id) DO UPDATE \
                     SET publish_attempts = outbox.publish_attempts + 1, \
                         last_error = EXCLUDED.last_error, next_attempt_at = EXCLUDED.next_attempt_at \
                     WHERE outbox.sent_at IS NULL"
                ))
                .bind(&command)
                .bind(error)
                .bind(at)
                .bind(false)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            PublishFailure::DeadLetter { error, letter, .. } => {
                let moved = sqlx::query(&format!(
                    "{row} ON CONFLICT (message_id) DO UPDATE \
                     SET publish_attempts = outbox.publish_attempts + 1, \
                         last_error = EXCLUDED.last_error, next_attempt_at = NULL, \
                         dead_lettered_at = EXCLUDED.dead_lettered_at \
                     WHERE outbox.sent_at IS NULL AND outbox.dead_lettered_at IS NULL"
                ))
                .bind(&command)
                .bind(error)
                .bind(None::<DateTime<Utc>>)
                .bind(true)
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
    // Unsent: outbox rows neither sent nor dead-lettered, and the commands on
    // events at or above their live relay's watermark that have no outbox row.
    // Each relay's range is read through the `relay_pos` index: `OFFSET 0`
    // keeps the planner, which knows nothing of `relays` on a fresh server,
    // from reading every event with commands instead (0.4 s at 20,000 sagas,
    // at every scrape of `/metrics`).
    let (outbox_unsent, oldest_unsent_at, dead_letters) = sqlx::query_as(
        "WITH unsent AS ( \
             SELECT created_at FROM outbox WHERE sent_at IS NULL AND dead_lettered_at IS NULL \
             UNION ALL \
             SELECT c.created_at FROM relays r \
             CROSS JOIN LATERAL ( \
                 SELECT e FROM saga_events e \
                 WHERE e.relay_pos >= r.published_below AND e.relay_pos < (r.epoch + 1) << 40 \
                   AND e.commands IS NOT NULL OFFSET 0 \
             ) AS kept \
             CROSS JOIN LATERAL event_commands(kept.e) AS c \
             WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = c.message_id) \
         ) \
         SELECT (SELECT count(*) FROM unsent), (SELECT min(created_at) FROM unsent), \
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
