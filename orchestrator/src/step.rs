//! One input to one saga: parse it for the saga's type, decide on the state
//! the actor holds (or rebuild it from the store), and write the outcome as one
//! atomic step; on a version conflict, decide again on fresh state.

use std::sync::Arc;

use actix::Recipient;
use chrono::{DateTime, Utc};
use sagaplane_sagas::{FieldError, Input, Policy, Rejection, Saga, SagaId, Status, View};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::OrchestratorConfig;
use crate::input::{ActionReport, ActorError, Handled, SagaInput, MAX_CONFLICT_RETRIES};
use crate::kind::{Kind, Reload};
use crate::messages::{Gone, NotCommitted, Publish};
use crate::metrics::Metrics;
use crate::notifier::SettledNotifier;
use crate::ports::{
    CommitOutcome, NewEvent, NewSaga, OutboxMessage, SagaRecord, SagaStore, StepCommit, StoreError,
};
use crate::positions::Positions;
use crate::task::detached;
use crate::trace::TraceParent;

/// What every saga actor shares.
pub(crate) struct Deps {
    pub store: Arc<dyn SagaStore>,
    pub relay: Recipient<Publish>,
    /// The relay, told of a step with commands that was not committed.
    pub unsure: Recipient<NotCommitted>,
    /// Positions for steps with commands (see [`Positions`]).
    pub positions: Arc<Positions>,
    pub notifier: Arc<SettledNotifier>,
    pub supervisor: Recipient<Gone>,
    pub metrics: Metrics,
    pub config: OrchestratorConfig,
    pub clock: SharedClock,
    /// Reads the stored saga definitions again (defined types only).
    pub reload: Option<Reload>,
}

/// A saga's state as its actor keeps it between inputs.
pub(crate) struct Loaded<S> {
    pub state: S,
    pub version: u64,
    /// The saga's own trace (from its start), for commands no input traces.
    pub trace: Option<TraceParent>,
}

pub(crate) type StepResult<S> = (Result<Handled, ActorError>, Option<Loaded<S>>);

/// Decides and commits one input; returns the outcome and the state to keep.
pub(crate) async fn step<S: Saga>(
    deps: &Deps,
    kind: &Kind<S>,
    id: SagaId,
    mut loaded: Option<Loaded<S>>,
    input: SagaInput,
) -> StepResult<S> {
    let parsed = match Parsed::<S>::new(input, deps.config.policy_for(&kind.name)) {
        Ok(p) => p,
        Err(e) => return (Err(e), loaded),
    };
    for _ in 0..MAX_CONFLICT_RETRIES {
        let current = match loaded.take() {
            Some(l) => l,
            None if parsed.new_saga.is_some() => Loaded {
                state: S::new(&kind.shared(), id),
                version: 0,
                trace: parsed.trace.clone(),
            },
            None => match load::<S>(deps, kind, id).await {
                Ok(Some(l)) => l,
                Ok(None) => return (Err(ActorError::UnknownSaga(id)), None),
                Err(e) => return (Err(e), None),
            },
        };
        if let Some(expected) = parsed.expected_version.filter(|v| *v != current.version) {
            let current_version = current.version;
            return (
                Err(ActorError::VersionMismatch {
                    expected,
                    current: current_version,
                }),
                Some(current),
            );
        }
        let events = match current.state.decide(parsed.input.clone()) {
            Ok(events) => events,
            Err(rejection) => {
                let handled = rejected(deps, id, &parsed, rejection).await;
                return (handled, Some(current));
            }
        };
        if events.is_empty() {
            return (Ok(Handled::NothingDue), Some(current));
        }
        let now = deps.clock.now();
        let before = current.state.view();
        if let Some(step) = &before.step {
            tracing::Span::current().record("step", step.as_str());
        }
        // Commands follow the input's trace, else the saga's own.
        let trace = parsed.trace.as_ref().or(current.trace.as_ref());
        if let Some(t) = trace {
            tracing::Span::current().record("trace_id", t.trace_id());
        }
        let saga_trace = current.trace.clone();
        // A dry run hands back the state it was decided on, untouched.
        let original = parsed.dry_run.then(|| current.state.clone());
        let mut state = current.state;
        let mut new_events = Vec::with_capacity(events.len());
        let mut outbox = Vec::new();
        for event in &events {
            state = state.evolve(event);
            outbox.extend(state.commands(event).into_iter().map(|c| OutboxMessage {
                message_id: Uuid::now_v7(),
                saga_id: id,
                saga_type: kind.name.to_string(),
                step: c.step,
                attempt: c.attempt,
                participant: c.participant,
                command_type: c.command_type,
                idempotency_key: c.idempotency_key,
                data: c.data,
                created_at: now,
                traceparent: trace.map(|t| t.child().to_string()),
                publish_attempts: 0,
            }));
            new_events.push(NewEvent {
                event_type: S::event_type(event),
                data: serde_json::to_value(event).expect("saga events serialise to JSON"),
                at: now,
            });
        }
        let version = current.version + events.len() as u64;
        let view = state.view();
        let status = view.status;
        let commit = Arc::new(StepCommit {
            saga_id: id,
            saga_type: kind.name.to_string(),
            expected_version: current.version,
            new_saga: parsed.new_saga.clone(),
            events: new_events,
            view,
            outbox,
            relay_pos: None,
            inbox: parsed.message_id.clone(),
            at: now,
        });
        if let Some(original) = original {
            let report = report(true, version, status, &commit);
            let loaded = Loaded {
                state: original,
                version: current.version,
                trace: saga_trace,
            };
            return (Ok(Handled::Acted(Box::new(report))), Some(loaded));
        }
        let mut commit = commit;
        let position = match commit.outbox.len() {
            0 => None,
            n => match deps.positions.take(n).await {
                Ok(p) => Some(p),
                Err(e) => return (Err(e.into()), None),
            },
        };
        Arc::get_mut(&mut commit)
            .expect("a step not yet committed is not shared")
            .relay_pos = position;
        let waited = std::time::Instant::now();
        let committed = deps.store.commit(commit.clone()).await;
        // Not committed now, yet perhaps written: a batch whose commit failed
        // on the way back is written again step by step, and a step it did
        // write then reads as a conflict or a duplicate. The relay looks the
        // position up, publishes the commands if they are there, and frees it.
        match (&committed, position) {
            (Ok(CommitOutcome::Committed), _) | (_, None) => {}
            (Err(StoreError::RelayGone), Some(p)) => {
                // Held back before the next try takes a position.
                deps.positions.suspend(p);
                deps.unsure.do_send(NotCommitted::RelayGone(p));
            }
            (_, Some(p)) => deps.unsure.do_send(NotCommitted::Unsure(p)),
        }
        let m = &deps.metrics;
        m.store_commit_seconds
            .observe(waited.elapsed().as_secs_f64());
        match committed {
            Ok(CommitOutcome::Committed) => {
                count_step(m, &kind.name, &before, &commit, now);
                tracing::debug!(version, status = %status, "saga step committed");
                let handled = if parsed.is_operator() {
                    Handled::Acted(Box::new(report(false, version, status, &commit)))
                } else if let Some(new) = &commit.new_saga {
                    Handled::Started(Box::new(SagaRecord::created(&commit, new)))
                } else {
                    Handled::Applied { version, status }
                };
                // The committer keeps no copy of the step: its commands are
                // taken out, not cloned, and the rest wakes the waiters.
                let mut commit = commit;
                let outbox = match Arc::get_mut(&mut commit) {
                    Some(c) => std::mem::take(&mut c.outbox),
                    None => commit.outbox.clone(),
                };
                if !outbox.is_empty() {
                    deps.relay.do_send(Publish {
                        messages: outbox,
                        position,
                    });
                }
                if status.is_settled() {
                    deps.notifier.notify(id, Some(commit));
                }
                let loaded = Loaded {
                    state,
                    version,
                    trace: saga_trace,
                };
                return (Ok(handled), Some(loaded));
            }
            Ok(CommitOutcome::DuplicateInbox) => {
                m.inbox_duplicates.inc();
                return (Ok(Handled::Duplicate), None);
            }
            Ok(CommitOutcome::BusinessKeyTaken) => {
                let input = commit
                    .new_saga
                    .as_ref()
                    .map(|n| n.input.clone())
                    .unwrap_or_default();
                return (Err(ActorError::BusinessKeyTaken { input }), None);
            }
            Err(StoreError::Conflict) => {
                tracing::debug!("saga version conflict; deciding again on fresh state");
            }
            Err(StoreError::RelayGone) => {
                tracing::warn!("the outbox relay was taken over; deciding again once it is back");
            }
            Err(e) => {
                tracing::error!(error.cause_chain = ?e, error.message = %e, "saga step not committed");
                return (Err(e.into()), None);
            }
        }
    }
    (Err(ActorError::Contended), None)
}

/// Counts what a committed step did: a saga started or settled, a step finished.
fn count_step(m: &Metrics, saga_type: &str, before: &View, step: &StepCommit, now: DateTime<Utc>) {
    let after = &step.view;
    if step.new_saga.is_some() {
        m.started(saga_type);
    }
    if after.status.is_settled() && after.status != before.status {
        m.settled(saga_type, after.status.as_str());
    }
    let moved_on = (&after.step, after.attempt) != (&before.step, before.attempt);
    if let (Some(name), Some(since), true) = (&before.step, before.step_since, moved_on) {
        let seconds = (now - since).num_microseconds().unwrap_or(0) as f64 / 1e6;
        m.step_finished(saga_type, name, seconds.max(0.0));
    }
}

fn report(dry_run: bool, version: u64, status: Status, step: &StepCommit) -> ActionReport {
    ActionReport {
        dry_run,
        version,
        status,
        events: step.events.clone(),
        commands: step.outbox.clone(),
    }
}

/// An input parsed for saga type `S`.
struct Parsed<S: Saga> {
    input: Input<S::Start>,
    message_id: Option<String>,
    new_saga: Option<NewSaga>,
    trace: Option<TraceParent>,
    expected_version: Option<u64>,
    dry_run: bool,
}

impl<S: Saga> Parsed<S> {
    fn is_operator(&self) -> bool {
        matches!(self.input, Input::Operator { .. })
    }

    fn new(input: SagaInput, policy: &Policy) -> Result<Self, ActorError> {
        Ok(match input {
            SagaInput::Start {
                business_key,
                input,
                version,
                now,
                traceparent,
            } => {
                if !input.is_object() {
                    // serde would also accept a struct as a positional array.
                    return Err(ActorError::Invalid(vec![FieldError::new(
                        "input",
                        "must be a JSON object",
                    )]));
                }
                let start: S::Start = serde_path_to_error::deserialize(&input).map_err(|e| {
                    let path = e.path().to_string();
                    let field = match path.as_str() {
                        "." => "input".to_owned(),
                        p if p.starts_with('[') => format!("input{p}"),
                        p => format!("input.{p}"),
                    };
                    ActorError::Invalid(vec![FieldError::new(field, e.inner().to_string())])
                })?;
                let normalized =
                    serde_json::to_value(&start).expect("start input serialises to JSON");
                let trace = traceparent.unwrap_or_else(TraceParent::new_root);
                Self {
                    input: Input::Start {
                        start,
                        version,
                        policy: policy.clone(),
                        now,
                    },
                    message_id: None,
                    new_saga: Some(NewSaga {
                        business_key,
                        input: normalized,
                        traceparent: Some(trace.to_string()),
                    }),
                    trace: Some(trace),
                    expected_version: None,
                    dry_run: false,
                }
            }
            SagaInput::Reply {
                message_id,
                reply,
                traceparent,
            } => Self {
                input: Input::Reply(reply),
                message_id: Some(message_id),
                new_saga: None,
                trace: traceparent,
                expected_version: None,
                dry_run: false,
            },
            SagaInput::Wake { now } => Self {
                input: Input::Wake { now },
                message_id: None,
                new_saga: None,
                trace: None,
                expected_version: None,
                dry_run: false,
            },
            SagaInput::Operator {
                action,
                now,
                expected_version,
                dry_run,
            } => Self {
                input: Input::Operator { action, now },
                message_id: None,
                new_saga: None,
                trace: None,
                expected_version,
                dry_run,
            },
        })
    }
}

/// A refused input: an inbound message is recorded (and so de-duplicated), a
/// timer that found nothing to do is fine, anything else goes back to the caller.
async fn rejected<S: Saga>(
    deps: &Deps,
    id: SagaId,
    parsed: &Parsed<S>,
    rejection: Rejection,
) -> Result<Handled, ActorError> {
    match (&parsed.message_id, &parsed.input, rejection) {
        (_, _, Rejection::Invalid(errors)) => Err(ActorError::Invalid(errors)),
        // Not recorded in the inbox: the caller keeps it as a dead letter,
        // from which it can be redriven once the participant is fixed.
        (Some(_), _, rejection @ Rejection::InvalidResult { .. }) => {
            Err(ActorError::BadReply(rejection.to_string()))
        }
        (Some(message_id), _, rejection) => {
            let detail = rejection.to_string();
            let (store, key, reason) = (deps.store.clone(), message_id.clone(), detail.clone());
            let recorded = detached(async move { store.record_ignored(&key, id, &reason).await });
            if recorded.await? {
                tracing::info!(message_id, reason = %detail, "inbound message ignored");
                deps.metrics.inputs_ignored.inc();
                Ok(Handled::Ignored(rejection))
            } else {
                deps.metrics.inbox_duplicates.inc();
                Ok(Handled::Duplicate)
            }
        }
        (None, Input::Wake { .. }, _) => Ok(Handled::NothingDue),
        (None, _, rejection) => Err(ActorError::Rejected(rejection)),
    }
}

async fn load<S: Saga>(
    deps: &Deps,
    kind: &Kind<S>,
    id: SagaId,
) -> Result<Option<Loaded<S>>, ActorError> {
    let store = deps.store.clone();
    let Some(history) = detached(async move { store.load(id).await }).await? else {
        return Ok(None);
    };
    if *history.saga_type != *kind.name {
        return Err(ActorError::Corrupt(format!(
            "saga {id} is of type `{}`, not `{}`",
            history.saga_type, kind.name
        )));
    }
    let state = match fold::<S>(&kind.shared(), id, history.events.clone(), |_| {}) {
        Ok(state) => state,
        // It may name a definition version stored by another node since this
        // one started: read them again, once.
        Err(e) if reloaded(deps).await => {
            tracing::info!(error.message = %e, "saga definitions read again");
            fold::<S>(&kind.shared(), id, history.events, |_| {}).map_err(ActorError::Corrupt)?
        }
        Err(e) => return Err(ActorError::Corrupt(e)),
    };
    Ok(Some(Loaded {
        state,
        version: history.version,
        trace: history.traceparent.as_deref().and_then(TraceParent::parse),
    }))
}

async fn reloaded(deps: &Deps) -> bool {
    match &deps.reload {
        Some(reload) => detached(reload()).await,
        None => false,
    }
}

/// Rebuilds a saga's state from its stored events, showing `each` the state
/// after every one; `Err` names the event that cannot be read.
pub(crate) fn fold<S: Saga>(
    shared: &Arc<S::Kind>,
    id: SagaId,
    events: Vec<serde_json::Value>,
    mut each: impl FnMut(&S),
) -> Result<S, String> {
    let mut state = S::new(shared, id);
    for (i, data) in events.into_iter().enumerate() {
        let event: S::Event = serde_json::from_value(data)
            .map_err(|e| format!("event {} of saga {id}: {e}", i + 1))?;
        state = state.evolve(&event);
        if let Some(why) = state.unreadable() {
            return Err(format!("event {} of saga {id}: {why}", i + 1));
        }
        each(&state);
    }
    Ok(state)
}
