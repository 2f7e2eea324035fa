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

/// What to do with a command its transport did not take. The command is
/// recorded in the outbox if it is not there yet (it was kept on its event).
#[derive(Debug, Clone)]
pub enum PublishFailure {
    /// Try again at `at`.
    Retry {
        message: OutboxMessage,
        error: String,
        at: DateTime<Utc>,
    },
    /// Out of budget, or refused for good: stop, and keep it as a dead letter.
    DeadLetter {
        message: OutboxMessage,
        error: String,
        letter: DeadLetter,
    },
}

impl PublishFailure {
    pub fn message(&self) -> &OutboxMessage {
        let (Self::Retry { message, .. } | Self::DeadLetter { message, .. }) = self;
        message
    }
}

/// Work waiting in the store, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Commands committed and not yet published, wherever kept: outbox rows,
    /// and commands on their events above their relay's watermark.
    pub outbox_unsent: i64,
    pub oldest_unsent_at: Option<DateTime<Utc>>,
    pub dead_letters: i64,
}

/// A relay position is `epoch << EPOCH_SHIFT | n`: the relay's epoch, then
/// its count of steps with commands (2^40 per run of a process).
pub const EPOCH_SHIFT: u32 = 40;

/// The outbox and the dead letters, as the relay and the ingresses use them.
///
/// A step's commands are kept with the step (see [`StepCommit::relay_pos`]),
/// and a relay records how far it has published them with a watermark: every
/// command it committed at a position below it was published, or is in the
/// outbox. Rows are written to the outbox only for what the live path could
/// not publish: failures, and the commands of a relay that is gone.
///
/// [`StepCommit::relay_pos`]: super::StepCommit::relay_pos
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Opens a relay for `node`; its epoch (positions start at `epoch << 40`).
    async fn open_relay(&self, node: &str) -> Result<u64, StoreError>;
    /// Records that every command of `epoch` below position `below` was
    /// published (or is in the outbox), and that the relay is alive.
    async fn relay_published(&self, epoch: u64, node: &str, below: u64) -> Result<(), StoreError>;
    /// Takes over the relays that are gone: any of `node` but `epoch` (earlier
    /// runs of this node), and any not seen for `dead_after`. Their commands
    /// not known to be published are copied into the outbox; returns how many.
    async fn recover_relays(
        &self,
        epoch: u64,
        node: &str,
        dead_after: std::time::Duration,
    ) -> Result<u64, StoreError>;
    /// Copies into the outbox the commands of the steps at `positions`, those
    /// that were committed (after a commit whose outcome is unknown).
    async fn recover_positions(&self, positions: &[u64]) -> Result<(), StoreError>;
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
    /// Records failed publishes: a retry time, or a dead letter; in the outbox,
    /// whether or not the command was there already.
    async fn publish_failed(&self, failures: &[PublishFailure]) -> Result<(), StoreError>;
    /// Puts a dead-lettered outbox row back in line with a fresh budget; the
    /// row, or `None` if it was not dead-lettered.
    async fn requeue(&self, message_id: Uuid) -> Result<Option<OutboxMessage>, StoreError>;
    async fn backlog(&self) -> Result<Backlog, StoreError>;
}
