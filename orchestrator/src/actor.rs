//! One actor per live saga: inputs are handled one at a time, each as one
//! store transaction; commands leave only after that transaction committed.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use sagaplane_sagas::{Saga, SagaId};
use tracing::Instrument;

use crate::input::{ActorError, Handled};
use crate::kind::Kind;
use crate::messages::{Gone, Handle};
use crate::step::{Deps, Loaded};

/// How long the actor of a finished saga stays for inputs already on their way.
const FINISHED_LINGER: Duration = Duration::from_millis(200);

/// The actor of one saga instance. Its state is a cache of the folded history:
/// dropped after any failure and rebuilt from the store on the next input.
pub(crate) struct SagaActor<S: Saga> {
    kind: Kind<S>,
    id: SagaId,
    generation: u64,
    deps: Arc<Deps>,
    loaded: Option<Loaded<S>>,
    busy: bool,
    idle: Option<SpawnHandle>,
}

impl<S: Saga> SagaActor<S> {
    pub(crate) fn new(kind: Kind<S>, id: SagaId, generation: u64, deps: Arc<Deps>) -> Self {
        Self {
            kind,
            id,
            generation,
            deps,
            loaded: None,
            busy: false,
            idle: None,
        }
    }

    /// Passivation: stop after `timeout` without input.
    fn arm_idle(&mut self, ctx: &mut Context<Self>, timeout: Duration) {
        if let Some(handle) = self.idle.take() {
            ctx.cancel_future(handle);
        }
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
        self.arm_idle(ctx, self.deps.config.idle_timeout);
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
        let kind = self.kind.clone();
        let span = tracing::info_span!(
            "saga_input",
            saga_id = %id,
            saga_type = %kind.name,
            step = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        let fut = async move {
            // A panic in the saga's code (or ours) fails this input only: the
            // actor drops its state and stops, and the next input rebuilds it
            // from the events. The caller counts crashes (crash-loop guard).
            let step = crate::step::step::<S>(&deps, &kind, id, loaded, msg.0);
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
                // A finished saga's actor (or one that dropped its state after
                // a failure) goes soon — not at once: inputs already queued for
                // it, such as racing actions on a saga that just ended, are
                // still answered from its state (or the store) instead of
                // finding the mailbox closed.
                let timeout = if finished {
                    FINISHED_LINGER
                } else {
                    act.deps.config.idle_timeout
                };
                act.arm_idle(ctx, timeout);
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
