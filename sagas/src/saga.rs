//! What every saga definition is made of.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// They lived here first: `saga::ActionKind` and the like keep working.
pub use crate::action::{Action, ActionKind, ActionName, Assume};
use crate::SagaId;

/// A saga type's state machine, pure.
///
/// `decide` turns an input into events (or refuses it), `evolve` folds one event
/// into the state, `commands` says what to send because of an event that was just
/// folded. None of them may do I/O, read a clock or draw random numbers.
pub trait Saga: Clone + Send + Unpin + Sized + 'static {
    /// What every saga of one type shares, e.g. the versions of its definition.
    type Kind: Send + Sync + 'static;
    /// What a client supplies to start one.
    type Start: Serialize + DeserializeOwned + Clone + PartialEq + Send + fmt::Debug;
    /// What is appended to the saga's history.
    type Event: Serialize + DeserializeOwned + Clone + Send + fmt::Debug;

    /// The state before any event.
    fn new(kind: &Arc<Self::Kind>, id: SagaId) -> Self;
    fn decide(&self, input: Input<Self::Start>) -> Result<Vec<Self::Event>, Rejection>;
    fn evolve(self, event: &Self::Event) -> Self;
    /// Commands to send because `event` was folded into `self` (the new state).
    fn commands(&self, event: &Self::Event) -> Vec<Command>;
    /// The summary kept in the read model.
    fn view(&self) -> View;
    /// The name of an event, stored beside it.
    fn event_type(event: &Self::Event) -> String;
    /// The operator actions that make sense in the current state.
    fn allowed_actions(&self) -> Vec<&'static str>;
    /// What the saga waits for and how far it got, for operators.
    fn explain(&self) -> Explanation;
    /// Why the folded history cannot be used here (e.g. it names a definition
    /// this process has not loaded); `None` when it can.
    fn unreadable(&self) -> Option<String> {
        None
    }
}

/// Something that happened to a saga from the outside.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<S> {
    Start {
        start: S,
        /// The definition version to run under; `None`: the newest.
        version: Option<u32>,
        policy: Policy,
        now: DateTime<Utc>,
    },
    Reply(Reply),
    /// A timer fired: deadlines and retry back-offs that are due at `now` act.
    Wake {
        now: DateTime<Utc>,
    },
    /// A person intervenes.
    Operator {
        action: Action,
        now: DateTime<Utc>,
    },
}

/// A participant's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The step name the command carried, e.g. `reserve-inventory`.
    pub step: String,
    /// The attempt the command carried.
    pub attempt: u32,
    pub outcome: Outcome,
    pub at: DateTime<Utc>,
    /// What a successful step returned (e.g. a charge id), for later steps'
    /// commands to read; kept in the step's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The step was applied.
    Succeeded,
    /// A business refusal (out of stock, card declined): not retried.
    Refused { reason: String },
    /// A transient failure: retried within the step's budget.
    Failed { reason: String },
}

/// A command the saga wants delivered to a participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Step name, e.g. `charge-payment`.
    pub step: String,
    /// Versioned message type, e.g. `order.payment.charge.v1`.
    pub command_type: String,
    /// Which participant handles it, e.g. `payment`.
    pub participant: String,
    pub attempt: u32,
    /// Same for every attempt of one step of one saga, so participants de-duplicate.
    pub idempotency_key: String,
    pub data: serde_json::Value,
}

/// Why an input was not turned into events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("the saga has already started")]
    AlreadyStarted,
    #[error("the saga has not started")]
    NotStarted,
    #[error("the saga is {0} and accepts no further input")]
    Terminal(Status),
    #[error(
        "the reply for step `{step}` (attempt {attempt}) does not match what the saga waits for"
    )]
    UnexpectedReply { step: String, attempt: u32 },
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    #[error(
        "version {to_version} of saga type `{saga_type}` lacks steps the saga still needs: {}",
        steps.join(", ")
    )]
    NotMigratable {
        saga_type: String,
        to_version: u32,
        steps: Vec<String>,
    },
    #[error(
        "the result of step `{step}` breaks its schema: {}",
        field_list(errors)
    )]
    InvalidResult {
        step: String,
        errors: Vec<FieldError>,
    },
    #[error(
        "`{action}` is not allowed while the saga is {status}; allowed now: {}",
        allowed_list(allowed)
    )]
    NotAllowed {
        action: &'static str,
        status: Status,
        allowed: Vec<&'static str>,
    },
}

fn field_list(errors: &[FieldError]) -> String {
    let list: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    list.join("; ")
}

fn allowed_list(allowed: &[&str]) -> String {
    if allowed.is_empty() {
        "none".to_owned()
    } else {
        allowed.join(", ")
    }
}

/// One invalid field of a request, with a JSON-pointer-like path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Compensating,
    Completed,
    Compensated,
    /// Needs an operator; not terminal.
    Suspended,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Running,
        Status::Compensating,
        Status::Completed,
        Status::Compensated,
        Status::Suspended,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Compensating => "compensating",
            Status::Completed => "completed",
            Status::Compensated => "compensated",
            Status::Suspended => "suspended",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Completed, compensated or cancelled: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Compensated | Status::Cancelled
        )
    }

    /// Terminal, or suspended: the saga will not move without an operator.
    pub fn is_settled(self) -> bool {
        self.is_terminal() || self == Status::Suspended
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The read-model summary of a saga.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub status: Status,
    pub step: Option<String>,
    pub attempt: Option<u32>,
    /// When the current attempt of the current step began.
    pub step_since: Option<DateTime<Utc>>,
    /// The participant that must answer the current step.
    pub participant: Option<String>,
    /// The current step's attempt budget.
    pub max_attempts: Option<u32>,
    /// When the saga next wants a `Wake` input (a deadline or a retry).
    pub wake_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What a saga waits for and how far it got: the answer to "why is it stuck".
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// `None` once the saga is terminal.
    pub waiting: Option<Waiting>,
    /// Saga-specific progress (steps done, compensation plan …) as JSON.
    pub progress: serde_json::Value,
}

/// The step a saga is in the middle of and what must happen for it to move.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub step: String,
    pub participant: String,
    pub attempt: u32,
    /// The step's attempt budget.
    pub max_attempts: u32,
    /// When this attempt began.
    pub since: DateTime<Utc>,
    pub on: WaitingOn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingOn {
    /// The command is out; the attempt times out at `deadline`.
    Reply { deadline: DateTime<Utc> },
    /// The last attempt failed; the next is sent at `at`.
    Retry { at: DateTime<Utc> },
    /// Out of budget: only an operator moves it on.
    Operator,
}

/// Retry budget and back-off of one kind of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Each delay drawn from 50–100 % of its value, so retries spread out.
    #[serde(default = "jitter_on")]
    pub jitter: bool,
}

fn jitter_on() -> bool {
    true
}

impl RetryPolicy {
    /// Delay before attempt `failed_attempt + 1`: exponential, capped, with a jitter
    /// in [50 %, 100 %] drawn from `seed` so that replays agree.
    pub fn backoff(&self, failed_attempt: u32, seed: u64) -> Duration {
        let exp = self
            .backoff_initial_ms
            .saturating_mul(1u64 << failed_attempt.saturating_sub(1).min(32));
        let capped = exp.min(self.backoff_max_ms);
        if !self.jitter {
            return Duration::milliseconds(capped as i64);
        }
        let jitter_permille = 500 + mix(seed) % 501;
        Duration::milliseconds((capped * jitter_permille / 1000) as i64)
    }
}

/// How long steps may take and how often they are retried; fixed when a saga
/// starts and recorded in its first event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Time a participant has to answer one attempt of a step …
    pub step_timeout_ms: u64,
    /// … unless its step is named here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_timeouts_ms: BTreeMap<String, u64>,
    pub forward: RetryPolicy,
    pub compensation: RetryPolicy,
    /// The whole saga must have gone forward to its end within this long of
    /// its start, or it compensates (0: no deadline). Compensation itself is
    /// not cut short.
    #[serde(default)]
    pub saga_deadline_ms: u64,
}

impl Policy {
    /// The timeout of one attempt of `step`.
    pub fn step_timeout_ms(&self, step: &str) -> u64 {
        self.step_timeouts_ms
            .get(step)
            .copied()
            .unwrap_or(self.step_timeout_ms)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            step_timeout_ms: 30_000,
            step_timeouts_ms: BTreeMap::new(),
            forward: RetryPolicy {
                max_attempts: 3,
                backoff_initial_ms: 200,
                backoff_max_ms: 10_000,
                jitter: true,
            },
            compensation: RetryPolicy {
                max_attempts: 5,
                backoff_initial_ms: 200,
                backoff_max_ms: 10_000,
                jitter: true,
            },
            saga_deadline_ms: 0,
        }
    }
}

/// SplitMix64 finaliser: spreads a seed over 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            jitter: true,
        };
        for seed in 0..50 {
            let first = p.backoff(1, seed).num_milliseconds();
            assert!((50..=100).contains(&first), "{first}");
            let third = p.backoff(3, seed).num_milliseconds();
            assert!((200..=400).contains(&third), "{third}");
            let capped = p.backoff(9, seed).num_milliseconds();
            assert!((500..=1_000).contains(&capped), "{capped}");
        }
    }

    #[test]
    fn status_round_trips_through_its_name() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("bogus"), None);
    }
}
