//! The vocabulary of the core: what goes into a saga (an input) and what comes
//! out (what became of it, or why it failed). Everything above speaks it.

use chrono::{DateTime, Utc};
use sagaplane_sagas::{Action, FieldError, Rejection, Reply, SagaId, Status};
use serde_json::Value;

use crate::ports::{NewEvent, OutboxMessage, SagaRecord, StoreError};
use crate::trace::TraceParent;

/// How often one input is decided again after losing an optimistic-concurrency race.
pub const MAX_CONFLICT_RETRIES: usize = 5;

/// An input for a saga, before it is parsed for the saga's type.
#[derive(Debug, Clone)]
pub enum SagaInput {
    Start {
        business_key: String,
        input: Value,
        /// The definition version to run under; `None`: the newest.
        version: Option<u32>,
        now: DateTime<Utc>,
        /// From the start request; a new trace when it had none.
        traceparent: Option<TraceParent>,
    },
    Reply {
        message_id: String,
        reply: Reply,
        traceparent: Option<TraceParent>,
    },
    Wake {
        now: DateTime<Utc>,
    },
    Operator {
        action: Action,
        now: DateTime<Utc>,
        /// `If-Match`: refused unless the saga is at this version.
        expected_version: Option<u64>,
        /// Decide and report, write nothing.
        dry_run: bool,
    },
}

/// What became of an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// The saga was created: its read-model row as committed.
    Started(Box<SagaRecord>),
    /// Events were appended; the saga is now at `version`.
    Applied { version: u64, status: Status },
    /// The message had been handled before; nothing changed.
    Duplicate,
    /// Recorded in the inbox but not applied (late, stale or foreign).
    Ignored(Rejection),
    /// Stored as a dead letter: no saga to apply it to.
    DeadLettered,
    /// A timer fired but nothing was due.
    NothingDue,
    /// An operator action, applied or (dry run) only predicted.
    Acted(Box<ActionReport>),
}

/// What became of bytes a channel delivered as a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// They were a reply; this is what became of it.
    Handled(Handled),
    /// They were not a usable reply, for this reason: kept as a dead letter.
    Unusable(String),
}

/// What an operator action did, or would do on a dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionReport {
    /// Nothing was written: the events and commands are a prediction.
    pub dry_run: bool,
    /// The saga's version after the action.
    pub version: u64,
    pub status: Status,
    pub events: Vec<NewEvent>,
    pub commands: Vec<OutboxMessage>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("the input is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the saga refused the input: {0}")]
    Rejected(Rejection),
    /// A reply the saga cannot take as it is (its result breaks the step's
    /// schema): kept as a dead letter, not recorded as handled.
    #[error("the reply is unusable: {0}")]
    BadReply(String),
    #[error("a saga of this type already has this business key")]
    BusinessKeyTaken { input: Value },
    #[error("there is no saga {0}")]
    UnknownSaga(SagaId),
    #[error("the saga is at version {current}, not {expected}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("there is no saga type `{0}`")]
    UnknownType(String),
    #[error("the saga's history could not be read: {0}")]
    Corrupt(String),
    #[error("the saga kept changing under the step; gave up after {MAX_CONFLICT_RETRIES} tries")]
    Contended,
    #[error("the orchestrator is shutting down")]
    Unavailable,
    #[error("the saga's actor panicked: {0}")]
    Panicked(String),
    /// The actor panicked too often in a short time: the saga was suspended.
    #[error("the saga was suspended: {0}")]
    CrashLoop(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started saga: its row, and whether this call created it.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    Created(SagaRecord),
    /// The business key was known with the same input: that saga.
    Existing(SagaRecord),
}

impl StartOutcome {
    pub fn record(&self) -> &SagaRecord {
        match self {
            StartOutcome::Created(r) | StartOutcome::Existing(r) => r,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("there is no saga type `{0}`")]
    UnknownType(String),
    #[error("the input is invalid")]
    Invalid(Vec<FieldError>),
    #[error("saga {0} has this business key with a different input")]
    KeyConflict(SagaId),
    #[error(transparent)]
    Failed(ActorError),
}

/// An inbound reply from some channel, with its raw bytes for dead-lettering.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: String,
    pub message_id: String,
    pub saga_id: SagaId,
    pub reply: Reply,
    pub raw: Vec<u8>,
    /// The message's W3C trace context, if it had a valid one.
    pub traceparent: Option<TraceParent>,
}
