//! History and steps: what a saga's actor reads and writes.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::{SagaId, View};
use serde::Serialize;

use super::error::StoreError;
use super::outbox::OutboxMessage;

/// The type of the event the supervisor appends when it suspends a saga that
/// keeps crashing. It is not the saga's own: folding a history skips it.
pub const SUSPENDED_BY_SUPERVISOR: &str = "SuspendedBySupervisor";

/// Everything one saga step writes, committed atomically.
#[derive(Debug, Clone)]
pub struct StepCommit {
    pub saga_id: SagaId,
    pub saga_type: String,
    /// The version the step was decided on; 0 for a new saga.
    pub expected_version: u64,
    /// Present when this step creates the saga.
    pub new_saga: Option<NewSaga>,
    pub events: Vec<NewEvent>,
    /// The read-model summary after the step.
    pub view: View,
    pub outbox: Vec<OutboxMessage>,
    /// The step's position in its relay's log, when it has commands: they are
    /// kept with the step, and published by the relay of that epoch (see
    /// [`OutboxStore`](super::OutboxStore)). `None`: they go to the outbox.
    pub relay_pos: Option<u64>,
    /// The inbound message this step consumed, recorded for de-duplication.
    pub inbox: Option<String>,
    pub at: DateTime<Utc>,
}

impl StepCommit {
    /// The saga's version once this step is written.
    pub fn version(&self) -> u64 {
        self.expected_version + self.events.len() as u64
    }

    /// The step's relay position, when its commands are kept on its first
    /// event (it has commands and a position).
    pub fn kept_on_event(&self) -> Option<u64> {
        self.relay_pos.filter(|_| !self.outbox.is_empty())
    }
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
    pub event_type: String,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// What a successful call to [`SagaStore::commit`] found.
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
    /// Who must answer the current step, and its attempt budget.
    pub participant: Option<String>,
    pub max_attempts: Option<i32>,
    pub version: i64,
    pub input: serde_json::Value,
    pub last_error: Option<String>,
    pub wake_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The saga's W3C trace context, from its start.
    pub traceparent: Option<String>,
}

impl SagaRecord {
    /// The row a saga's first step writes: what a store holds once `step`
    /// (which carries `new`) committed, without reading it back.
    pub fn created(step: &StepCommit, new: &NewSaga) -> Self {
        let mut record = SagaRecord {
            id: step.saga_id,
            saga_type: step.saga_type.clone(),
            business_key: new.business_key.clone(),
            status: String::new(),
            current_step: None,
            attempt: None,
            step_since: None,
            participant: None,
            max_attempts: None,
            version: 0,
            input: new.input.clone(),
            last_error: None,
            wake_at: None,
            created_at: step.at,
            updated_at: step.at,
            traceparent: new.traceparent.clone(),
        };
        record.apply(step);
        record
    }

    /// The row after `step`: its summary, its version and its time.
    pub fn apply(&mut self, step: &StepCommit) {
        let view = &step.view;
        self.status = view.status.as_str().to_owned();
        self.current_step = view.step.clone();
        self.attempt = view.attempt.map(|a| a as i32);
        self.step_since = view.step_since;
        self.participant = view.participant.clone();
        self.max_attempts = view.max_attempts.map(|a| a as i32);
        self.version = step.version() as i64;
        self.last_error = view.last_error.clone();
        self.wake_at = view.wake_at;
        self.updated_at = step.at;
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub event_type: String,
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A saga's history and its steps, each written atomically.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
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
    /// Suspends a saga whose own code cannot take a step (its actor keeps
    /// panicking): appends a [`SUSPENDED_BY_SUPERVISOR`] event with the reason,
    /// marks the row suspended and disarms its timer. `false` if it was not
    /// there or already suspended.
    async fn suspend(&self, saga: SagaId, reason: &str) -> Result<bool, StoreError>;
    async fn saga_type(&self, saga: SagaId) -> Result<Option<String>, StoreError>;
    async fn get(&self, saga: SagaId) -> Result<Option<SagaRecord>, StoreError>;
    async fn find_by_key(
        &self,
        saga_type: &str,
        business_key: &str,
    ) -> Result<Option<SagaRecord>, StoreError>;
    async fn events(&self, saga: SagaId) -> Result<Vec<EventRecord>, StoreError>;
}
