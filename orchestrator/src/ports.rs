//! The ports the core drives; adapters implement them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::{SagaId, View};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The type of the event the supervisor appends when it suspends a saga that
/// keeps crashing. It is not the saga's own: folding a history skips it.
pub const SUSPENDED_BY_SUPERVISOR: &str = "SuspendedBySupervisor";

/// Everything one saga step writes, committed atomically.
#[derive(Debug, Clone)]
pub struct StepCommit {
    pub saga_id: SagaId,
    pub saga_type: &'static str,
    /// The version the step was decided on; 0 for a new saga.
    pub expected_version: u64,
    /// Present when this step creates the saga.
    pub new_saga: Option<NewSaga>,
    pub events: Vec<NewEvent>,
    /// The read-model summary after the step.
    pub view: View,
    pub outbox: Vec<OutboxMessage>,
    /// The inbound message this step consumed, recorded for de-duplication.
    pub inbox: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSaga {
    pub business_key: String,
    pub input: serde_json::Value,
    /// The saga's W3C trace context.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// A command waiting in, or read back from, the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub message_id: Uuid,
    pub saga_id: SagaId,
    pub saga_type: String,
    pub step: String,
    pub attempt: u32,
    pub participant: String,
    pub command_type: String,
    pub idempotency_key: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// W3C trace context for the participant.
    pub traceparent: Option<String>,
    /// Failed attempts to hand it to its transport so far.
    #[serde(default)]
    pub publish_attempts: u32,
}

/// What a successful call to [`EventStore::commit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The inbox already held the message: nothing was written.
    DuplicateInbox,
    /// Another saga of this type already has the business key: nothing was written.
    BusinessKeyTaken,
}

/// A saga's stored history.
#[derive(Debug, Clone)]
pub struct StoredHistory {
    pub saga_type: String,
    pub traceparent: Option<String>,
    pub events: Vec<serde_json::Value>,
    pub version: u64,
}

/// The read-model row of a saga.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaRecord {
    pub id: SagaId,
    pub saga_type: String,
    pub business_key: String,
    pub status: String,
    pub current_step: Option<String>,
    pub attempt: Option<i32>,
    pub step_since: Option<DateTime<Utc>>,
    pub version: i64,
    pub input: serde_json::Value,
    pub last_error: Option<String>,
    pub wake_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub event_type: String,
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A message that could not be used (inbound) or not be delivered (an outbox
/// row past its publish budget), kept with its raw bytes.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub channel: String,
    pub reason: String,
    pub raw: Vec<u8>,
    pub headers: serde_json::Value,
    /// For a command that could not be delivered: its outbox row.
    pub outbox_message_id: Option<Uuid>,
}

/// What to do with an outbox row its transport did not take.
#[derive(Debug, Clone)]
pub enum PublishFailure {
    /// Try again at `at`.
    Retry {
        message_id: Uuid,
        error: String,
        at: DateTime<Utc>,
    },
    /// Out of budget, or refused for good: stop, and keep it as a dead letter.
    DeadLetter {
        message_id: Uuid,
        error: String,
        letter: DeadLetter,
    },
}

/// A saga whose timer is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub saga_id: SagaId,
    pub saga_type: String,
    pub wake_at: DateTime<Utc>,
}

/// Work waiting in the store, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub outbox_unsent: i64,
    pub oldest_unsent_at: Option<DateTime<Utc>>,
    pub dead_letters: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended first: decide again on fresh state.
    #[error("the saga's version moved on; the step must be decided again")]
    Conflict,
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the database failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Durable history, read model, outbox, inbox and timers.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// The saga's history, or `None` when there is no such saga.
    async fn load(&self, saga: SagaId) -> Result<Option<StoredHistory>, StoreError>;
    /// Writes one step atomically (see [`StepCommit`]); a store may commit the
    /// steps of many sagas in one transaction, each still all or nothing.
    async fn commit(&self, step: Arc<StepCommit>) -> Result<CommitOutcome, StoreError>;
    /// Records an inbound message that was not applied; `false` when it had
    /// already been recorded (a duplicate).
    async fn record_ignored(
        &self,
        message_id: &str,
        saga: SagaId,
        detail: &str,
    ) -> Result<bool, StoreError>;
    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError>;
    /// Outbox rows of the `partitions` (a bit set) to publish at `now`, oldest
    /// first: neither sent nor
    /// dead-lettered, and either due for a retry or never tried and older than
    /// `grace` (younger ones are the live path's).
    async fn unsent(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    async fn mark_sent(&self, ids: &[Uuid]) -> Result<(), StoreError>;
    /// Records failed publishes: a retry time, or a dead letter.
    async fn publish_failed(&self, failures: &[PublishFailure]) -> Result<(), StoreError>;
    /// Puts a dead-lettered outbox row back in line with a fresh budget; the
    /// row, or `None` if it was not dead-lettered.
    async fn requeue(&self, message_id: Uuid) -> Result<Option<OutboxMessage>, StoreError>;
    /// Sagas of the `partitions` (a bit set) whose wake-up time is at or
    /// before `now`, most overdue first.
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<DueTimer>, StoreError>;
    /// Renews `node`'s partition leases for `ttl`, takes free or expired ones
    /// up to a fair share of the live nodes, and gives back any above it; the
    /// partitions it holds now, as a bit set.
    async fn lease_partitions(
        &self,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<u64, StoreError>;
    async fn saga_type(&self, saga: SagaId) -> Result<Option<String>, StoreError>;
    /// Suspends a saga whose own code cannot take a step (its actor keeps
    /// panicking): appends a [`SUSPENDED_BY_SUPERVISOR`] event with the reason,
    /// marks the row suspended and disarms its timer. `false` if it was not
    /// there or already suspended.
    async fn suspend(&self, saga: SagaId, reason: &str) -> Result<bool, StoreError>;
    async fn get(&self, saga: SagaId) -> Result<Option<SagaRecord>, StoreError>;
    async fn find_by_key(
        &self,
        saga_type: &str,
        business_key: &str,
    ) -> Result<Option<SagaRecord>, StoreError>;
    async fn events(&self, saga: SagaId) -> Result<Vec<EventRecord>, StoreError>;
    /// `Err` says why the store cannot serve (unreachable, schema not current).
    async fn ready(&self) -> Result<(), String>;
    async fn backlog(&self) -> Result<Backlog, StoreError>;
}

/// Why a transport did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransportError {
    pub reason: String,
    /// Retrying cannot help (e.g. the message is too large for the broker).
    pub permanent: bool,
}

impl TransportError {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: false,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: true,
        }
    }
}

/// The messages of a batch a transport did not take; the others were delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} message(s) not published", failed.len())]
pub struct PublishError {
    pub failed: Vec<(Uuid, TransportError)>,
}

impl PublishError {
    /// Every message of the batch failed for the same reason (e.g. the broker is down).
    pub fn all(messages: &[OutboxMessage], error: TransportError) -> Self {
        Self {
            failed: messages
                .iter()
                .map(|m| (m.message_id, error.clone()))
                .collect(),
        }
    }
}

/// Delivers committed commands to participants.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError>;
}

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
}

/// The outbox row of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRef {
    pub message_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
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
    /// Dead letters by id, after `after`; only unresolved ones when `open_only`.
    async fn dead_letters(
        &self,
        open_only: bool,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError>;
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError>;
    /// Marks an open dead letter resolved; `false` if it was not open.
    async fn resolve_dead_letter(
        &self,
        id: i64,
        resolution: Resolution,
        by: &str,
        note: &str,
    ) -> Result<bool, StoreError>;
}
