//! The handle the driving side uses: start sagas, feed them inputs, act on
//! them and read them. Each operation goes through the saga's actor (routed
//! by the supervisor), so one saga takes one input at a time wherever it came
//! from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use sagaplane_sagas::{Action, Catalog, Reply, SagaId, Status};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::codec;
use crate::input::{
    ActionReport, ActorError, Handled, Inbound, Ingested, SagaInput, StartError, StartOutcome,
};
use crate::kind::Reload;
use crate::messages::{Crashed, Gone, Handle, Publish, Route, RouteError};
use crate::metrics::Metrics;
use crate::notifier::{SettledNotifier, Watch};
use crate::ports::{DeadLetter, EventRecord, EventStore, SagaRecord, StoreError};
use crate::relay::OutboxRelay;
use crate::supervisor::{Kinds, Snapshot, Supervisor};
use crate::trace::TraceParent;

/// How often a long poll re-reads the store, for changes made by other nodes.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// How many times an input is routed again when its actor stopped (idle,
/// finished) between routing and sending.
const ROUTE_ROUNDS: usize = 5;

/// Cheap to clone; every clone drives the same actors.
#[derive(Clone)]
pub struct Orchestrator {
    pub(crate) supervisor: Addr<Supervisor>,
    pub(crate) crash_limit: u32,
    pub(crate) crash_window: Duration,
    pub(crate) relay: Addr<OutboxRelay>,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) notifier: Arc<SettledNotifier>,
    pub(crate) metrics: Metrics,
    pub(crate) recovered: Arc<AtomicBool>,
    pub(crate) kinds: Kinds,
    pub(crate) clock: SharedClock,
    /// The saga definitions the defined types run, as last read.
    pub(crate) catalog: Arc<RwLock<Arc<Catalog>>>,
    pub(crate) reload: Option<Reload>,
}

impl Orchestrator {
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The saga types registered, in name order.
    pub fn saga_types(&self) -> Vec<String> {
        let kinds = self.kinds.read().expect("kinds lock poisoned");
        let mut types: Vec<String> = kinds.keys().cloned().collect();
        types.sort_unstable();
        types
    }

    /// The saga definitions this node runs: those it started with, and those
    /// other nodes stored since that it has needed.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock poisoned").clone()
    }

    /// Reads the stored definitions again; `true` if anything was new.
    async fn reload(&self) -> bool {
        match &self.reload {
            Some(reload) => reload().await,
            None => false,
        }
    }

    /// Whether the commands left unsent by an earlier run have been handed to
    /// their transport (start-up recovery).
    pub fn recovered(&self) -> bool {
        self.recovered.load(Ordering::Acquire)
    }

    /// Starts a saga; `(saga_type, business_key)` is its idempotency key. The
    /// saga's row comes back as committed (a new saga) or as stored (the same
    /// key with the same input).
    pub async fn start(
        &self,
        saga_type: &str,
        business_key: &str,
        input: Value,
        version: Option<u32>,
        traceparent: Option<TraceParent>,
    ) -> Result<StartOutcome, StartError> {
        let started = self
            .start_watching(saga_type, business_key, input, version, traceparent, false)
            .await;
        started.map(|(outcome, _)| outcome)
    }

    /// As [`Orchestrator::start`]; with `watch`, a saga it creates comes with
    /// a subscription to its settling, taken before its first step, for
    /// [`Orchestrator::wait_settled_from`].
    pub async fn start_watching(
        &self,
        saga_type: &str,
        business_key: &str,
        input: Value,
        version: Option<u32>,
        traceparent: Option<TraceParent>,
        watch: bool,
    ) -> Result<(StartOutcome, Option<Watch>), StartError> {
        let id = SagaId::from_uuid(Uuid::now_v7());
        let watch = watch.then(|| self.notifier.subscribe(id));
        let outcome = self
            .start_as(id, saga_type, business_key, input, version, traceparent)
            .await;
        match outcome {
            Ok(StartOutcome::Created(record)) => Ok((StartOutcome::Created(record), watch)),
            // Dropped, the subscription to a saga not made is gone too.
            other => other.map(|outcome| (outcome, None)),
        }
    }

    async fn start_as(
        &self,
        id: SagaId,
        saga_type: &str,
        business_key: &str,
        input: Value,
        version: Option<u32>,
        traceparent: Option<TraceParent>,
    ) -> Result<StartOutcome, StartError> {
        let start = SagaInput::Start {
            business_key: business_key.to_owned(),
            input,
            version,
            now: self.clock.now(),
            traceparent,
        };
        let mut started = self
            .dispatch(id, Some(saga_type.to_owned()), start.clone())
            .await;
        // A version (or a type) another node stored since this one started.
        let unknown_version =
            |errors: &[sagaplane_sagas::FieldError]| errors.iter().any(|e| e.field == "version");
        if matches!(&started, Err(ActorError::Invalid(e)) if unknown_version(e))
            && self.reload().await
        {
            started = self.dispatch(id, Some(saga_type.to_owned()), start).await;
        }
        match started {
            Ok(Handled::Started(record)) => Ok(StartOutcome::Created(*record)),
            Ok(other) => Err(StartError::Failed(ActorError::Corrupt(format!(
                "a start was handled as {other:?}"
            )))),
            Err(ActorError::BusinessKeyTaken { input }) => {
                let existing = self
                    .store
                    .find_by_key(saga_type, business_key)
                    .await
                    .map_err(|e| StartError::Failed(e.into()))?
                    .ok_or(StartError::Failed(ActorError::Contended))?;
                if existing.input == input {
                    Ok(StartOutcome::Existing(existing))
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
        let input = self.reply_input(message_id.clone(), reply, traceparent);
        let reason = match self.dispatch(saga_id, None, input).await {
            Err(ActorError::UnknownSaga(id)) => format!("no saga {id}"),
            Err(ActorError::BadReply(reason)) => reason,
            other => return other,
        };
        self.dead_letter(DeadLetter {
            channel,
            reason,
            raw,
            headers: json!({ "message_id": message_id }),
            outbox_message_id: None,
        })
        .await?;
        Ok(Handled::DeadLettered)
    }

    /// Applies a reply once; unlike [`Orchestrator::receive`], a reply for no
    /// known saga is an error (`UnknownSaga`), not a dead letter.
    pub async fn apply_reply(&self, inbound: Inbound) -> Result<Handled, ActorError> {
        let input = self.reply_input(inbound.message_id, inbound.reply, inbound.traceparent);
        self.dispatch(inbound.saga_id, None, input).await
    }

    /// A reply as the saga takes it: at the orchestrator's own time, like every
    /// other input, so a participant whose clock is off moves no deadline (its
    /// own time is only logged).
    fn reply_input(
        &self,
        message_id: String,
        mut reply: Reply,
        traceparent: Option<TraceParent>,
    ) -> SagaInput {
        let received = self.clock.now();
        tracing::debug!(message_id, participant_time = %reply.at, %received, "reply received");
        reply.at = received;
        SagaInput::Reply {
            message_id,
            reply,
            traceparent,
        }
    }

    /// Decodes the bytes `channel` delivered as a reply (see
    /// [`codec::decode_for`]) and applies it once; bytes that are not a usable
    /// reply are kept as a dead letter with the reason.
    pub async fn receive_raw(
        &self,
        channel: &str,
        raw: Vec<u8>,
        headers: Value,
    ) -> Result<Handled, ActorError> {
        Ok(match self.ingest(channel, raw, headers).await? {
            Ingested::Handled(handled) => handled,
            Ingested::Unusable(_) => Handled::DeadLettered,
        })
    }

    /// As [`Orchestrator::receive_raw`], saying why bytes were unusable.
    pub async fn ingest(
        &self,
        channel: &str,
        raw: Vec<u8>,
        headers: Value,
    ) -> Result<Ingested, ActorError> {
        match codec::decode_for(channel, &raw) {
            Ok(inbound) => Ok(Ingested::Handled(self.receive(inbound).await?)),
            Err(e) => {
                let reason = codec::printable(&e.to_string());
                self.dead_letter(DeadLetter {
                    channel: channel.to_owned(),
                    reason: reason.clone(),
                    raw,
                    headers,
                    outbox_message_id: None,
                })
                .await?;
                Ok(Ingested::Unusable(reason))
            }
        }
    }

    /// Keeps an inbound message that cannot be used, with its bytes and why.
    pub async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        let letter = codec::storable(letter);
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
            now: self.clock.now(),
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

    /// Puts a dead-lettered command back in line with a fresh publish budget;
    /// `false` if it was not dead-lettered (already requeued, or sent).
    pub async fn requeue(&self, message_id: Uuid) -> Result<bool, StoreError> {
        match self.store.requeue(message_id).await? {
            Some(message) => {
                self.relay.do_send(Publish {
                    messages: vec![message],
                    position: None,
                });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The saga's read-model row.
    pub async fn saga(&self, saga_id: SagaId) -> Result<Option<SagaRecord>, StoreError> {
        self.store.get(saga_id).await
    }

    /// The saga's stored history, oldest first; empty if there is no such saga.
    pub async fn events(&self, saga_id: SagaId) -> Result<Vec<EventRecord>, StoreError> {
        self.store.events(saga_id).await
    }

    /// The saga's state after each of its events (time travel), folded from
    /// the stored history; `None` if there is no such saga.
    pub async fn replay(&self, saga_id: SagaId) -> Result<Option<Vec<Snapshot>>, ActorError> {
        let Some(history) = self.store.load(saga_id).await? else {
            return Ok(None);
        };
        let kind = |kinds: &Kinds| {
            let kinds = kinds.read().expect("kinds lock poisoned");
            kinds.get(history.saga_type.as_str()).cloned()
        };
        let replayed = kind(&self.kinds).map(|k| k.replay(saga_id, history.events.clone()));
        if let Some(Ok(snapshots)) = replayed {
            return Ok(Some(snapshots));
        }
        // It may name a type or version stored since this node started.
        if !self.reload().await {
            return match replayed {
                Some(Err(e)) => Err(ActorError::Corrupt(e)),
                _ => Err(ActorError::UnknownType(history.saga_type.clone())),
            };
        }
        let kind =
            kind(&self.kinds).ok_or_else(|| ActorError::UnknownType(history.saga_type.clone()))?;
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
            now: self.clock.now(),
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
        self.wait_until(saga_id, deadline, None).await
    }

    /// As [`Orchestrator::wait_settled`], for a saga whose row is `record`
    /// and to whose settling `watch` (if any) subscribed before that row was
    /// written: the row need not be read first.
    pub async fn wait_settled_from(
        &self,
        record: SagaRecord,
        watch: Option<Watch>,
        timeout: Duration,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = record.id;
        self.wait_until(id, deadline, watch.map(|w| (record, w)))
            .await
    }

    async fn wait_until(
        &self,
        saga_id: SagaId,
        deadline: tokio::time::Instant,
        known: Option<(SagaRecord, Watch)>,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let (mut known, mut watch) = match known {
            Some((record, watch)) => (Some(record), watch),
            None => (None, self.notifier.subscribe(saga_id)),
        };
        loop {
            // Read after subscribing, so a settling in between is not missed.
            let record = match known.take() {
                Some(record) => record,
                None => match self.store.get(saga_id).await? {
                    Some(record) => record,
                    None => return Ok(None),
                },
            };
            let done = Status::parse(&record.status).is_none_or(Status::is_settled);
            let now = tokio::time::Instant::now();
            if done || now >= deadline {
                return Ok(Some(record));
            }
            let poll = (deadline - now).min(WAIT_POLL);
            match tokio::time::timeout(poll, watch.settled()).await {
                // Woken by the step that settled it, the row is the one known
                // with that step applied: every column a step changes, it
                // sets. Not if the row read is newer (a suspension undone).
                Ok(Some(Some(step))) if step.version() > record.version as u64 => {
                    let mut record = record;
                    record.apply(&step);
                    return Ok(Some(record));
                }
                // Woken without a step, or by an older one: read again.
                Ok(_) => watch = self.notifier.subscribe(saga_id),
                // Another node may have moved it: read again.
                Err(_) => {}
            }
        }
    }

    /// Hands an input to the saga's actor, starting it if needed; a panic of
    /// the actor goes to the crash-loop guard.
    async fn dispatch(
        &self,
        saga_id: SagaId,
        mut saga_type: Option<String>,
        input: SagaInput,
    ) -> Result<Handled, ActorError> {
        let mut reloaded = false;
        for _ in 0..ROUTE_ROUNDS {
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
                Ok(Err(RouteError::UnknownType(t))) => {
                    // A type another node stored since this one started.
                    if !reloaded && self.reload().await {
                        reloaded = true;
                        continue;
                    }
                    return Err(ActorError::UnknownType(t));
                }
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
            self.notifier.notify(saga_id, None);
        }
        Err(ActorError::CrashLoop(reason))
    }
}
