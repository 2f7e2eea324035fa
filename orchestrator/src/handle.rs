//! The handle the driving side uses to start sagas and feed them inputs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use sagaplane_sagas::{Action, FieldError, Policy, Reply, RetryPolicy, Saga, SagaId, Status};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::actor::{ActorError, Deps, Handle, Handled, SagaInput};
use crate::codec;
use crate::leases::{LeaseKeeper, Ownership};
use crate::metrics::Metrics;
use crate::notifier::SettledNotifier;
use crate::ports::{
    DeadLetter, EventStore, NewEvent, OutboxMessage, SagaRecord, StoreError, Transport,
};
use crate::relay::{OutboxRelay, Publish};
use crate::supervisor::{
    Crashed, Gone, Kind, Kinds, Route, RouteError, SagaKind, Snapshot, Supervisor,
};
use crate::timers::TimerService;
use crate::trace::TraceParent;

/// How often a long poll re-reads the store, for changes made by other nodes.
const WAIT_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Step timeouts, retry budgets and deadline given to every new saga …
    pub policy: Policy,
    /// … unless its type has its own here.
    pub type_policies: HashMap<String, Policy>,
    /// A saga actor stops after this long without input.
    pub idle_timeout: Duration,
    /// How often due timers are looked for.
    pub timer_interval: Duration,
    /// How often the outbox is swept for rows left unsent.
    pub outbox_sweep_interval: Duration,
    /// How often a command its transport did not take is tried again, and how
    /// soon, before it is dead-lettered.
    pub publish: RetryPolicy,
    /// A saga whose actor panics this often within `crash_window` is suspended.
    pub crash_limit: u32,
    pub crash_window: Duration,
    /// This node's name in the partition leases; unique per process.
    pub node_id: String,
    /// How long a partition lease lasts unless renewed (every third of it).
    pub lease_ttl: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            type_policies: HashMap::new(),
            idle_timeout: Duration::from_secs(30),
            timer_interval: Duration::from_millis(100),
            outbox_sweep_interval: Duration::from_secs(5),
            publish: RetryPolicy {
                max_attempts: 10,
                backoff_initial_ms: 200,
                backoff_max_ms: 60_000,
            },
            crash_limit: 3,
            crash_window: Duration::from_secs(60),
            node_id: format!("node-{}", Uuid::new_v4().simple()),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Created(SagaId),
    /// The business key was known with the same input: that saga.
    Existing(SagaId),
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

/// Cheap to clone; every clone drives the same actors.
#[derive(Clone)]
pub struct Orchestrator {
    supervisor: Addr<Supervisor>,
    crash_limit: u32,
    crash_window: Duration,
    relay: Addr<OutboxRelay>,
    store: Arc<dyn EventStore>,
    notifier: Arc<SettledNotifier>,
    metrics: Metrics,
    recovered: Arc<AtomicBool>,
    kinds: Kinds,
}

/// Registers saga types, then starts the actors.
pub struct OrchestratorBuilder {
    store: Arc<dyn EventStore>,
    transport: Arc<dyn Transport>,
    config: OrchestratorConfig,
    kinds: HashMap<&'static str, Box<dyn SagaKind>>,
    metrics: Metrics,
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

impl OrchestratorBuilder {
    /// Counts into `metrics` (e.g. shared with the store) instead of new ones.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn register<S: Saga>(mut self) -> Self {
        self.kinds.insert(S::TYPE, Box::new(Kind::<S>::new()));
        self
    }

    /// Starts the supervisor, outbox relay and timer service on the current
    /// arbiter. The relay publishes whatever was left unsent at once, and the
    /// timer service fires deadlines that fell due while the process was down.
    pub fn start(self) -> Orchestrator {
        let config = self.config;
        let metrics = self.metrics;
        let recovered = Arc::new(AtomicBool::new(false));
        let ownership = Ownership::default();
        LeaseKeeper::new(
            self.store.clone(),
            config.node_id.clone(),
            config.lease_ttl,
            ownership.clone(),
            metrics.clone(),
        )
        .start();
        let relay = OutboxRelay::new(
            self.store.clone(),
            self.transport,
            config.outbox_sweep_interval,
            config.publish,
            ownership.clone(),
            metrics.clone(),
            recovered.clone(),
        )
        .start();
        let relay_addr = relay.clone();
        let notifier = Arc::new(SettledNotifier::default());
        let store = self.store.clone();
        let kinds: Kinds = Arc::new(self.kinds);
        let supervisor_kinds = kinds.clone();
        let deps_notifier = notifier.clone();
        let deps_metrics = metrics.clone();
        let supervisor = Supervisor::create(move |ctx| {
            let deps = Arc::new(Deps {
                store,
                relay,
                notifier: deps_notifier,
                supervisor: ctx.address().recipient(),
                metrics: deps_metrics,
                policy: config.policy,
                type_policies: config.type_policies,
                idle_timeout: config.idle_timeout,
            });
            Supervisor::new(supervisor_kinds, deps)
        });
        let orchestrator = Orchestrator {
            supervisor,
            crash_limit: config.crash_limit.max(1),
            crash_window: config.crash_window,
            relay: relay_addr,
            store: self.store.clone(),
            notifier,
            metrics,
            recovered,
            kinds,
        };
        TimerService::new(
            self.store,
            orchestrator.clone(),
            config.timer_interval,
            ownership,
        )
        .start();
        orchestrator
    }
}

impl Orchestrator {
    pub fn builder(
        store: Arc<dyn EventStore>,
        transport: Arc<dyn Transport>,
        config: OrchestratorConfig,
    ) -> OrchestratorBuilder {
        OrchestratorBuilder {
            store,
            transport,
            config,
            kinds: HashMap::new(),
            metrics: Metrics::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the commands left unsent by an earlier run have been handed to
    /// their transport (start-up recovery).
    pub fn recovered(&self) -> bool {
        self.recovered.load(Ordering::Acquire)
    }

    /// Starts a saga; `(saga_type, business_key)` is its idempotency key.
    pub async fn start(
        &self,
        saga_type: &str,
        business_key: &str,
        input: Value,
        traceparent: Option<TraceParent>,
    ) -> Result<StartOutcome, StartError> {
        let id = SagaId::from_uuid(Uuid::now_v7());
        let start = SagaInput::Start {
            business_key: business_key.to_owned(),
            input,
            now: crate::clock::now(),
            traceparent,
        };
        match self.dispatch(id, Some(saga_type.to_owned()), start).await {
            Ok(_) => Ok(StartOutcome::Created(id)),
            Err(ActorError::BusinessKeyTaken { input }) => {
                let existing = self
                    .store
                    .find_by_key(saga_type, business_key)
                    .await
                    .map_err(|e| StartError::Failed(e.into()))?
                    .ok_or(StartError::Failed(ActorError::Contended))?;
                if existing.input == input {
                    Ok(StartOutcome::Existing(existing.id))
                } else {
                    Err(StartError::KeyConflict(existing.id))
                }
            }
            Err(ActorError::UnknownType(t)) => Err(StartError::UnknownType(t)),
            Err(ActorError::Invalid(errors)) => Err(StartError::Invalid(errors)),
            Err(e) => Err(StartError::Failed(e)),
        }
    }

    /// Applies a participant's reply once; a reply for no known saga is kept
    /// as a dead letter with its raw bytes.
    pub async fn receive(&self, inbound: Inbound) -> Result<Handled, ActorError> {
        let Inbound {
            channel,
            message_id,
            saga_id,
            reply,
            raw,
            traceparent,
        } = inbound;
        let input = SagaInput::Reply {
            message_id: message_id.clone(),
            reply,
            traceparent,
        };
        match self.dispatch(saga_id, None, input).await {
            Err(ActorError::UnknownSaga(id)) => {
                self.dead_letter(DeadLetter {
                    channel,
                    reason: format!("no saga {id}"),
                    raw,
                    headers: json!({ "message_id": message_id }),
                    outbox_message_id: None,
                })
                .await?;
                Ok(Handled::DeadLettered)
            }
            other => other,
        }
    }

    /// Applies a reply once; unlike [`Orchestrator::receive`], a reply for no
    /// known saga is an error (`UnknownSaga`), not a dead letter.
    pub async fn apply_reply(&self, inbound: Inbound) -> Result<Handled, ActorError> {
        let input = SagaInput::Reply {
            message_id: inbound.message_id,
            reply: inbound.reply,
            traceparent: inbound.traceparent,
        };
        self.dispatch(inbound.saga_id, None, input).await
    }

    /// Decodes a reply CloudEvent from `channel` and applies it once; bytes that
    /// are not a usable reply are kept as a dead letter with the reason.
    pub async fn receive_raw(
        &self,
        channel: &str,
        raw: Vec<u8>,
        headers: Value,
    ) -> Result<Handled, ActorError> {
        match codec::decode_reply(channel, &raw) {
            Ok(inbound) => self.receive(inbound).await,
            Err(e) => {
                self.dead_letter(DeadLetter {
                    channel: channel.to_owned(),
                    reason: e.to_string(),
                    raw,
                    headers,
                    outbox_message_id: None,
                })
                .await?;
                Ok(Handled::DeadLettered)
            }
        }
    }

    /// Keeps an inbound message that cannot be used, with its bytes and why.
    pub async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        tracing::warn!(channel = %letter.channel, reason = %letter.reason, "inbound message dead-lettered");
        self.store.dead_letter(letter).await?;
        self.metrics.dead_letters.inc();
        Ok(())
    }

    /// An operator's action on a saga, applied through its actor like any input.
    /// With `expected_version`, it is refused unless the saga is at that version;
    /// with `dry_run`, nothing is written and the report predicts the effect.
    pub async fn act(
        &self,
        saga_id: SagaId,
        action: Action,
        expected_version: Option<u64>,
        dry_run: bool,
    ) -> Result<ActionReport, ActorError> {
        let input = SagaInput::Operator {
            action,
            now: crate::clock::now(),
            expected_version,
            dry_run,
        };
        match self.dispatch(saga_id, None, input).await? {
            Handled::Acted(report) => Ok(*report),
            other => Err(ActorError::Corrupt(format!(
                "an operator action was handled as {other:?}"
            ))),
        }
    }

    /// Counts a panic of a saga's actor; past the crash limit the saga is
    /// suspended instead of crash-looping (its timer disarmed, so only an
    /// operator or a new reply drives it again).
    async fn crashed(&self, saga_id: SagaId, message: String) -> Result<Handled, ActorError> {
        let window = self.crash_window;
        let crashes = self
            .supervisor
            .send(Crashed { saga_id, window })
            .await
            .unwrap_or(1);
        if crashes < self.crash_limit {
            return Err(ActorError::Panicked(message));
        }
        let reason = format!(
            "the saga's actor panicked {crashes} times within {} s; last: {message}",
            window.as_secs()
        );
        if self.store.suspend(saga_id, &reason).await? {
            tracing::error!(saga_id = %saga_id, reason, "crash-looping saga suspended");
            self.notifier.notify(saga_id);
        }
        Err(ActorError::CrashLoop(reason))
    }

    /// Puts a dead-lettered command back in line with a fresh publish budget;
    /// `false` if it was not dead-lettered (already requeued, or sent).
    pub async fn requeue(&self, message_id: Uuid) -> Result<bool, StoreError> {
        match self.store.requeue(message_id).await? {
            Some(message) => {
                self.relay.do_send(Publish(vec![message]));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The saga's state after each of its events (time travel), folded from
    /// the stored history; `None` if there is no such saga.
    pub async fn replay(&self, saga_id: SagaId) -> Result<Option<Vec<Snapshot>>, ActorError> {
        let Some(history) = self.store.load(saga_id).await? else {
            return Ok(None);
        };
        let kind = self
            .kinds
            .get(history.saga_type.as_str())
            .ok_or_else(|| ActorError::UnknownType(history.saga_type.clone()))?;
        kind.replay(saga_id, history.events)
            .map(Some)
            .map_err(ActorError::Corrupt)
    }

    /// The saga's current state, as operators see it.
    pub async fn inspect(&self, saga_id: SagaId) -> Result<Option<Snapshot>, ActorError> {
        Ok(self.replay(saga_id).await?.and_then(|mut all| all.pop()))
    }

    /// Lets a saga act on deadlines and back-offs that are due.
    pub async fn wake(&self, saga_id: SagaId, saga_type: String) -> Result<Handled, ActorError> {
        let input = SagaInput::Wake {
            now: crate::clock::now(),
        };
        self.dispatch(saga_id, Some(saga_type), input).await
    }

    /// The saga's row once it is settled (terminal or suspended), or as it is
    /// when `timeout` runs out; `None` if there is no such saga.
    pub async fn wait_settled(
        &self,
        saga_id: SagaId,
        timeout: Duration,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let settled = self.notifier.subscribe(saga_id);
            let record = self.store.get(saga_id).await?;
            let Some(r) = &record else { return Ok(None) };
            let done = Status::parse(&r.status).is_none_or(Status::is_settled);
            let now = tokio::time::Instant::now();
            if done || now >= deadline {
                return Ok(record);
            }
            let _ = tokio::time::timeout((deadline - now).min(WAIT_POLL), settled).await;
        }
    }

    async fn dispatch(
        &self,
        saga_id: SagaId,
        mut saga_type: Option<String>,
        input: SagaInput,
    ) -> Result<Handled, ActorError> {
        // A few rounds: an actor may stop (idle, finished) between routing and sending.
        for _ in 0..5 {
            let route = Route {
                saga_id,
                saga_type: saga_type.clone(),
            };
            let routed = match self.supervisor.send(route).await {
                Ok(Ok(routed)) => routed,
                Ok(Err(RouteError::TypeNeeded)) => match self.store.saga_type(saga_id).await? {
                    Some(t) => {
                        saga_type = Some(t);
                        continue;
                    }
                    None => return Err(ActorError::UnknownSaga(saga_id)),
                },
                Ok(Err(RouteError::UnknownType(t))) => return Err(ActorError::UnknownType(t)),
                Err(_) => return Err(ActorError::Unavailable),
            };
            match routed.recipient.send(Handle(input.clone())).await {
                Ok(Err(ActorError::Panicked(message))) => {
                    return self.crashed(saga_id, message).await
                }
                Ok(result) => return result,
                Err(_) => self.supervisor.do_send(Gone {
                    saga_id,
                    generation: routed.generation,
                }),
            }
        }
        Err(ActorError::Unavailable)
    }
}
