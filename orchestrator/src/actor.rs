//! One actor per live saga: inputs are handled one at a time, each as one
//! store transaction; commands leave only after that transaction committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sagaplane_sagas::{Action, FieldError, Policy, Rejection, Reply, Saga, SagaId, Status};
use serde_json::Value;
use tracing::Instrument;

use crate::handle::ActionReport;
use crate::metrics::Metrics;
use crate::notifier::SettledNotifier;
use crate::ports::{EventStore, StoreError};
use crate::relay::OutboxRelay;
use crate::supervisor::Gone;
use crate::trace::TraceParent;

/// What every saga actor shares.
pub(crate) struct Deps {
    pub store: Arc<dyn EventStore>,
    pub relay: Addr<OutboxRelay>,
    pub notifier: Arc<SettledNotifier>,
    pub supervisor: Recipient<Gone>,
    pub metrics: Metrics,
    pub policy: Policy,
    pub type_policies: HashMap<String, Policy>,
    pub idle_timeout: Duration,
}

impl Deps {
    /// The policy new sagas of `saga_type` start with.
    pub fn policy_for(&self, saga_type: &str) -> &Policy {
        self.type_policies.get(saga_type).unwrap_or(&self.policy)
    }
}

/// An input for a saga, before it is parsed for the saga's type.
#[derive(Debug, Clone)]
pub enum SagaInput {
    Start {
        business_key: String,
        input: Value,
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

#[derive(Message)]
#[rtype(result = "Result<Handled, ActorError>")]
pub(crate) struct Handle(pub SagaInput);

/// What became of an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
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

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("the input is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the saga refused the input: {0}")]
    Rejected(Rejection),
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
    #[error(
        "the saga kept changing under the step; gave up after {} tries",
        crate::step::MAX_CONFLICT_RETRIES
    )]
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

pub(crate) struct Loaded<S> {
    pub state: S,
    pub version: u64,
    /// The saga's own trace (from its start), for commands no input traces.
    pub trace: Option<TraceParent>,
}

/// The actor of one saga instance. Its state is a cache of the folded history:
/// dropped after any failure and rebuilt from the store on the next input.
pub struct SagaActor<S: Saga> {
    id: SagaId,
    generation: u64,
    deps: Arc<Deps>,
    loaded: Option<Loaded<S>>,
    busy: bool,
    idle: Option<SpawnHandle>,
}

impl<S: Saga> SagaActor<S> {
    pub(crate) fn new(id: SagaId, generation: u64, deps: Arc<Deps>) -> Self {
        Self {
            id,
            generation,
            deps,
            loaded: None,
            busy: false,
            idle: None,
        }
    }

    /// Passivation: stop after `idle_timeout` without input.
    fn arm_idle(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.idle.take() {
            ctx.cancel_future(handle);
        }
        let timeout = self.deps.idle_timeout;
        self.idle = Some(ctx.run_later(timeout, |act, ctx| {
            if !act.busy {
                ctx.stop();
            }
        }));
    }
}

impl<S: Saga> Actor for SagaActor<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm_idle(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.deps.supervisor.do_send(Gone {
            saga_id: self.id,
            generation: self.generation,
        });
    }
}

impl<S: Saga> Handler<Handle> for SagaActor<S> {
    type Result = AtomicResponse<Self, Result<Handled, ActorError>>;

    fn handle(&mut self, msg: Handle, _ctx: &mut Context<Self>) -> Self::Result {
        self.busy = true;
        let deps = self.deps.clone();
        let id = self.id;
        let loaded = self.loaded.take();
        let span = tracing::info_span!(
            "saga_input",
            saga_id = %id,
            saga_type = S::TYPE,
            step = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        let fut = async move {
            // A panic in the saga's code (or ours) fails this input only: the
            // actor drops its state and stops, and the next input rebuilds it
            // from the events. The caller counts crashes (crash-loop guard).
            let step = crate::step::step::<S>(&deps, id, loaded, msg.0);
            match std::panic::AssertUnwindSafe(step).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    tracing::error!(panic = %message, "saga actor panicked");
                    deps.metrics.actor_panics.inc();
                    (Err(ActorError::Panicked(message)), None)
                }
            }
        }
        .instrument(span);
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            |(result, loaded), act, ctx| {
                act.busy = false;
                let finished = loaded
                    .as_ref()
                    .is_none_or(|l: &Loaded<S>| l.state.view().status.is_terminal());
                act.loaded = loaded;
                if finished {
                    ctx.stop();
                } else {
                    act.arm_idle(ctx);
                }
                result
            },
        )))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
