//! Creates saga actors on demand and forgets them when they stop.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use sagaplane_sagas::{Explanation, Saga, SagaId, View};
use serde_json::Value;
use tokio::time::Instant;

use crate::actor::SagaActor;
use crate::kind::Kind;
use crate::messages::{Crashed, Gone, Handle, Route, RouteError, Routed};
use crate::step::Deps;

/// A saga's state as operators see it, at one point of its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub view: View,
    pub allowed_actions: Vec<&'static str>,
    pub explanation: Explanation,
}

/// Starts actors of one saga type, and folds its histories.
pub(crate) trait SagaKind: Send + Sync {
    fn spawn(&self, id: SagaId, generation: u64, deps: Arc<Deps>) -> Recipient<Handle>;
    /// The state after each of `events`, in order.
    fn replay(&self, id: SagaId, events: Vec<Value>) -> Result<Vec<Snapshot>, String>;
    /// For a defined type, to take in versions stored since.
    fn as_any(&self) -> &dyn Any;
}

/// Every registered saga type by name; grows when another node stores a new
/// type's definition.
pub(crate) type Kinds = Arc<RwLock<HashMap<String, Arc<dyn SagaKind>>>>;

impl<S: Saga> SagaKind for Kind<S> {
    fn spawn(&self, id: SagaId, generation: u64, deps: Arc<Deps>) -> Recipient<Handle> {
        SagaActor::<S>::new(self.clone(), id, generation, deps)
            .start()
            .recipient()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn replay(&self, id: SagaId, events: Vec<Value>) -> Result<Vec<Snapshot>, String> {
        let mut snapshots = Vec::with_capacity(events.len());
        crate::step::fold::<S>(&self.shared(), id, events, |state| {
            snapshots.push(Snapshot {
                view: state.view(),
                allowed_actions: state.allowed_actions(),
                explanation: state.explain(),
            })
        })?;
        Ok(snapshots)
    }
}

struct Live {
    generation: u64,
    recipient: Recipient<Handle>,
}

/// Owns the live saga actors, at most one per saga.
pub(crate) struct Supervisor {
    kinds: Kinds,
    live: HashMap<SagaId, Live>,
    /// When each saga's actor panicked lately.
    crashes: HashMap<SagaId, Vec<Instant>>,
    next_generation: u64,
    deps: Arc<Deps>,
}

impl Supervisor {
    pub fn new(kinds: Kinds, deps: Arc<Deps>) -> Self {
        Self {
            kinds,
            live: HashMap::new(),
            crashes: HashMap::new(),
            next_generation: 0,
            deps,
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<Route> for Supervisor {
    type Result = Result<Routed, RouteError>;

    fn handle(&mut self, msg: Route, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(live) = self.live.get(&msg.saga_id) {
            if live.recipient.connected() {
                return Ok(Routed {
                    recipient: live.recipient.clone(),
                    generation: live.generation,
                });
            }
        }
        let saga_type = msg.saga_type.ok_or(RouteError::TypeNeeded)?;
        let kind = self
            .kinds
            .read()
            .expect("kinds lock poisoned")
            .get(saga_type.as_str())
            .cloned()
            .ok_or(RouteError::UnknownType(saga_type))?;
        self.next_generation += 1;
        let generation = self.next_generation;
        let recipient = kind.spawn(msg.saga_id, generation, self.deps.clone());
        self.live.insert(
            msg.saga_id,
            Live {
                generation,
                recipient: recipient.clone(),
            },
        );
        Ok(Routed {
            recipient,
            generation,
        })
    }
}

impl Handler<Crashed> for Supervisor {
    type Result = u32;

    fn handle(&mut self, msg: Crashed, _ctx: &mut Context<Self>) -> u32 {
        let now = Instant::now();
        // Forget crashes older than their window, of every saga.
        self.crashes.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < msg.window);
            !times.is_empty()
        });
        let times = self.crashes.entry(msg.saga_id).or_default();
        times.push(now);
        times.len() as u32
    }
}

impl Handler<Gone> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Gone, _ctx: &mut Context<Self>) {
        if self
            .live
            .get(&msg.saga_id)
            .is_some_and(|l| l.generation == msg.generation)
        {
            self.live.remove(&msg.saga_id);
        }
    }
}
