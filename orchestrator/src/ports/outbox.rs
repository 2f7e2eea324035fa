//! The outbox: committed commands on their way to a transport, and the dead
//! letters of what could not be used or delivered.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::SagaId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::StoreError;

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

/// Work waiting in the store, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub outbox_unsent: i64,
    pub oldest_unsent_at: Option<DateTime<Utc>>,
    pub dead_letters: i64,
}

/// The outbox and the dead letters, as the relay and the ingresses use them.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError>;
    /// Outbox rows of the `partitions` (a bit set) to publish at `now`, oldest
    /// first: neither sent nor dead-lettered, and either due for a retry or
    /// never tried and older than `grace` (younger ones are the live path's).
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
    async fn backlog(&self) -> Result<Backlog, StoreError>;
}
