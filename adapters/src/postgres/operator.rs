//! [`OperatorQueries`] on PostgreSQL: search, counts and dead letters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    CommandRecord, CommandRef, DeadLetterRecord, InboxRecord, OperatorQueries, Resolution,
    SagaFilter, SagaRecord, SagaStats, StoreError,
};
use sagaplane_sagas::SagaId;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::rows::{db, SagaRow, SAGA_COLUMNS};
use super::store::PgEventStore;

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    id: i64,
    channel: String,
    reason: String,
    raw: Vec<u8>,
    headers: serde_json::Value,
    received_at: DateTime<Utc>,
    resolution: Option<String>,
    resolved_by: Option<String>,
    resolved_note: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    outbox_message_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct CommandRow {
    message_id: Uuid,
    step: String,
    attempt: i32,
    participant: String,
    command_type: String,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    publish_attempts: i32,
    last_error: Option<String>,
    dead_lettered: bool,
    traceparent: Option<String>,
}

impl From<CommandRow> for CommandRecord {
    fn from(r: CommandRow) -> Self {
        CommandRecord {
            message_id: r.message_id,
            step: r.step,
            attempt: r.attempt.max(0) as u32,
            participant: r.participant,
            command_type: r.command_type,
            created_at: r.created_at,
            sent_at: r.sent_at,
            publish_attempts: r.publish_attempts.max(0) as u32,
            last_error: r.last_error,
            dead_lettered: r.dead_lettered,
            traceparent: r.traceparent,
        }
    }
}

impl From<DeadLetterRow> for DeadLetterRecord {
    fn from(r: DeadLetterRow) -> Self {
        DeadLetterRecord {
            id: r.id,
            channel: r.channel,
            reason: r.reason,
            raw: r.raw,
            headers: r.headers,
            received_at: r.received_at,
            resolution: r.resolution.as_deref().and_then(|s| match s {
                "redriven" => Some(Resolution::Redriven),
                "discarded" => Some(Resolution::Discarded),
                _ => None,
            }),
            resolved_by: r.resolved_by,
            resolved_note: r.resolved_note,
            resolved_at: r.resolved_at,
            outbox_message_id: r.outbox_message_id,
        }
    }
}

const DEAD_LETTER_COLUMNS: &str = "id, channel, reason, raw, headers, received_at, resolution, \
     resolved_by, resolved_note, resolved_at, outbox_message_id";

#[async_trait]
impl OperatorQueries for PgEventStore {
    async fn search(&self, f: &SagaFilter) -> Result<Vec<SagaRecord>, StoreError> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE true"));
        if !f.statuses.is_empty() {
            q.push(" AND status = ANY(")
                .push_bind(&f.statuses)
                .push(")");
        }
        if !f.saga_types.is_empty() {
            q.push(" AND saga_type = ANY(")
                .push_bind(&f.saga_types)
                .push(")");
        }
        if let Some(k) = &f.business_key {
            q.push(" AND business_key = ").push_bind(k);
        }
        if let Some(from) = f.created_from {
            q.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(to) = f.created_to {
            q.push(" AND created_at < ").push_bind(to);
        }
        if let Some(since) = f.stuck_since {
            // The same predicate as the partial index `sagas_unsettled_created`,
            // read newest first; `updated_at` is checked on the rows (a step
            // changes it, so it is not indexed: see that index's migration).
            q.push(" AND status IN ('running', 'compensating', 'suspended') AND updated_at < ")
                .push_bind(since);
        }
        if let Some((created_at, id)) = f.after {
            q.push(" AND (created_at, id) < (")
                .push_bind(created_at)
                .push(", ")
                .push_bind(id.as_uuid())
                .push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.limit);
        let rows: Vec<SagaRow> = q
            .build_query_as()
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn stats(&self) -> Result<SagaStats, StoreError> {
        // Through the partial index `sagas_unsettled_created`: as small as
        // the live work, however many sagas have ended.
        let mut counts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT saga_type, status, count(*) FROM sagas \
             WHERE status IN ('running', 'compensating', 'suspended') \
             GROUP BY saga_type, status",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        let oldest: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, created_at FROM sagas \
             WHERE status IN ('running', 'compensating', 'suspended') AND status <> 'suspended' \
             ORDER BY created_at, id LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        let suspended = counts
            .iter()
            .filter(|(_, status, _)| status == "suspended")
            .map(|(_, _, n)| n)
            .sum();
        let terminal = self.terminal_counts().read(self.pool()).await?;
        let terminal_counted_at = terminal.map(|(terminal, at)| {
            counts.extend(terminal);
            at
        });
        counts.sort();
        Ok(SagaStats {
            counts,
            oldest_unsettled: oldest.map(|(id, at)| (SagaId::from_uuid(id), at)),
            suspended,
            terminal_counted_at,
        })
    }

    async fn command_for(
        &self,
        saga: SagaId,
        step: &str,
        attempt: u32,
    ) -> Result<Option<CommandRef>, StoreError> {
        let row: Option<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT message_id, created_at, sent_at FROM commands \
             WHERE saga_id = $1 AND step = $2 AND attempt = $3 \
             ORDER BY message_id DESC LIMIT 1",
        )
        .bind(saga.as_uuid())
        .bind(step)
        .bind(attempt as i32)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        Ok(row.map(|(message_id, created_at, sent_at)| CommandRef {
            message_id,
            created_at,
            sent_at,
        }))
    }

    async fn saga_messages(
        &self,
        saga: SagaId,
    ) -> Result<(Vec<CommandRecord>, Vec<InboxRecord>), StoreError> {
        let commands: Vec<CommandRow> = sqlx::query_as(
            "SELECT message_id, step, attempt, participant, command_type, created_at, sent_at, \
                    publish_attempts, last_error, dead_lettered_at IS NOT NULL AS dead_lettered, \
                    traceparent \
             FROM commands WHERE saga_id = $1 ORDER BY created_at, message_id",
        )
        .bind(saga.as_uuid())
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        let inbox: Vec<(String, String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT message_id, outcome, detail, received_at FROM received_messages \
             WHERE saga_id = $1 ORDER BY received_at, message_id",
        )
        .bind(saga.as_uuid())
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        Ok((
            commands.into_iter().map(Into::into).collect(),
            inbox
                .into_iter()
                .map(|(message_id, outcome, detail, received_at)| InboxRecord {
                    message_id,
                    outcome,
                    detail,
                    received_at,
                })
                .collect(),
        ))
    }

    async fn dead_letters(
        &self,
        open_only: bool,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters \
             WHERE id > $1 AND (NOT $2 OR resolution IS NULL) ORDER BY id LIMIT $3"
        ))
        .bind(after.unwrap_or(0))
        .bind(open_only)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn find_dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
        let row: Option<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        Ok(row.map(Into::into))
    }

    async fn resolve_dead_letter(
        &self,
        id: i64,
        resolution: Resolution,
        by: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE dead_letters SET resolution = $2, resolved_by = $3, resolved_note = $4, \
                    resolved_at = now() \
             WHERE id = $1 AND resolution IS NULL",
        )
        .bind(id)
        .bind(resolution.as_str())
        .bind(by)
        .bind(note)
        .execute(self.pool())
        .await
        .map_err(db)?
        .rows_affected();
        Ok(updated == 1)
    }
}
