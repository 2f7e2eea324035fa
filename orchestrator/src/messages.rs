//! The messages the core's actors exchange, in one place: each names a verb
//! and says what it answers.

use std::time::Duration;

use actix::prelude::*;
use sagaplane_sagas::SagaId;

use crate::input::{ActorError, Handled, SagaInput};
use crate::ports::OutboxMessage;

/// To a saga's actor: handle one input.
#[derive(Message)]
#[rtype(result = "Result<Handled, ActorError>")]
pub(crate) struct Handle(pub SagaInput);

/// To the supervisor: the actor of a saga, started when it is not live.
#[derive(Message)]
#[rtype(result = "Result<Routed, RouteError>")]
pub(crate) struct Route {
    pub saga_id: SagaId,
    /// Needed only to start an actor; `None` when the caller does not know it.
    pub saga_type: Option<String>,
}

pub(crate) struct Routed {
    pub recipient: Recipient<Handle>,
    pub generation: u64,
}

pub(crate) enum RouteError {
    UnknownType(String),
    /// No actor is live and no type was given.
    TypeNeeded,
}

/// To the supervisor: a saga's actor panicked; answers how often within the
/// crash window.
#[derive(Message)]
#[rtype(result = "u32")]
pub(crate) struct Crashed {
    pub saga_id: SagaId,
    pub window: Duration,
}

/// To the supervisor: a saga actor stopped (idle, finished or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Gone {
    pub saga_id: SagaId,
    pub generation: u64,
}

/// To the outbox relay: commands to publish, newly committed by the step at
/// `position` (kept on its event), or read from the outbox (`None`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish {
    pub messages: Vec<OutboxMessage>,
    pub position: Option<u64>,
}

/// To the outbox relay: a step with commands at this position that was not
/// committed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum NotCommitted {
    /// It may or may not have been written (its commit failed); its commands,
    /// if written, go to the outbox.
    Unsure(u64),
    /// Not written: the relay was taken over as gone. Its positions are held
    /// back until it has recorded itself anew.
    RelayGone(u64),
}
