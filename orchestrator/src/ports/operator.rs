//! The read side operators use: search, counts, dead letters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::SagaId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::StoreError;
use super::history::SagaRecord;

/// Which sagas an operator's search returns; newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SagaFilter {
    /// Any of these statuses; empty means all.
    pub statuses: Vec<String>,
    /// Any of these types; empty means all.
    pub saga_types: Vec<String>,
    pub business_key: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub created_to: Option<DateTime<Utc>>,
    /// Not terminal, and no progress since this instant.
    pub stuck_since: Option<DateTime<Utc>>,
    /// Keyset cursor: only sagas after this one in the order.
    pub after: Option<(DateTime<Utc>, SagaId)>,
    pub limit: i64,
}

/// Counts for the operator dashboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SagaStats {
    /// `(saga_type, status, count)`, sorted.
    pub counts: Vec<(String, String, i64)>,
    /// The running or compensating saga created first.
    pub oldest_unsettled: Option<(SagaId, DateTime<Utc>)>,
    pub suspended: i64,
    /// When the terminal sagas were counted: a store may keep that count a
    /// while, since counting them means reading them all. `None`: they are
    /// being counted and are not in `counts` yet. Unsettled sagas are
    /// counted on every call.
    pub terminal_counted_at: Option<DateTime<Utc>>,
}

/// The outbox row of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRef {
    pub message_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A command a saga sent (or is still to send), as its outbox row holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub message_id: Uuid,
    pub step: String,
    pub attempt: u32,
    pub participant: String,
    pub command_type: String,
    /// When the step that decided it committed.
    pub created_at: DateTime<Utc>,
    /// When it was known taken by its transport: for a command published
    /// right after its step, the step's time, once its relay's watermark
    /// (written every 50 ms) has passed it; for one retried, when that
    /// succeeded. `None` until then.
    pub sent_at: Option<DateTime<Utc>>,
    /// Failed attempts to hand it to its transport.
    pub publish_attempts: u32,
    /// The transport's last error, where the store keeps it.
    pub last_error: Option<String>,
    /// Its publish budget ran out: it is a dead letter.
    pub dead_lettered: bool,
    pub traceparent: Option<String>,
}

/// An inbound message a saga's inbox recorded: applied (its effects are the
/// events committed with it, at `received_at`) or ignored (late or stale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRecord {
    pub message_id: String,
    /// `applied` or `ignored`.
    pub outcome: String,
    /// Why it was ignored.
    pub detail: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// A stored dead letter and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    pub id: i64,
    pub channel: String,
    pub reason: String,
    pub raw: Vec<u8>,
    pub headers: serde_json::Value,
    pub received_at: DateTime<Utc>,
    pub resolution: Option<Resolution>,
    pub resolved_by: Option<String>,
    pub resolved_note: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// For a command that could not be delivered: its outbox row.
    pub outbox_message_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Redriven,
    Discarded,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Redriven => "redriven",
            Resolution::Discarded => "discarded",
        }
    }
}

/// The read side operators use: search, counts, dead letters.
#[async_trait]
pub trait OperatorQueries: Send + Sync + 'static {
    async fn search(&self, filter: &SagaFilter) -> Result<Vec<SagaRecord>, StoreError>;
    async fn stats(&self) -> Result<SagaStats, StoreError>;
    /// The command sent for one attempt of one step, if any.
    async fn command_for(
        &self,
        saga: SagaId,
        step: &str,
        attempt: u32,
    ) -> Result<Option<CommandRef>, StoreError>;
    /// Every command of a saga and every inbound message its inbox recorded,
    /// each in the order it was recorded.
    async fn saga_messages(
        &self,
        saga: SagaId,
    ) -> Result<(Vec<CommandRecord>, Vec<InboxRecord>), StoreError>;
    /// Dead letters by id, after `after`; only unresolved ones when `open_only`.
    async fn dead_letters(
        &self,
        open_only: bool,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError>;
    async fn find_dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError>;
    /// Marks an open dead letter resolved; `false` if it was not open.
    async fn resolve_dead_letter(
        &self,
        id: i64,
        resolution: Resolution,
        by: &str,
        note: &str,
    ) -> Result<bool, StoreError>;
}
