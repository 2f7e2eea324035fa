//! What tests of the core (here and in other crates) drive it with: a
//! transport that records every command it is handed and can be told to
//! refuse them, and a saga type whose code panics on every reply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::{Command, Explanation, Input, Rejection, Saga, SagaId, Status, View};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::SharedClock;
use crate::ports::{OutboxMessage, PublishError, Transport, TransportError};

/// One publish attempt: when, what, and whether it was taken.
pub type Attempt = (DateTime<Utc>, OutboxMessage, bool);

/// Records every command handed to it, with the clock's time; while told to
/// refuse, records the attempt and fails it (transiently).
#[derive(Clone)]
pub struct RecordingTransport {
    clock: SharedClock,
    refuse: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
}

impl RecordingTransport {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            refuse: Arc::default(),
            log: Arc::default(),
        }
    }

    /// While on, every publish fails transiently.
    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::Release);
    }

    /// Every command taken, in order, with when.
    pub fn taken(&self) -> Vec<(DateTime<Utc>, OutboxMessage)> {
        self.attempts()
            .into_iter()
            .filter(|(_, _, taken)| *taken)
            .map(|(at, m, _)| (at, m))
            .collect()
    }

    /// Every publish attempt, taken or refused.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().expect("transport log poisoned").clone()
    }
}

#[async_trait]
impl Transport for RecordingTransport {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        let refuse = self.refuse.load(Ordering::Acquire);
        let now = self.clock.now();
        self.log
            .lock()
            .expect("transport log poisoned")
            .extend(messages.iter().map(|m| (now, m.clone(), !refuse)));
        if refuse {
            return Err(PublishError::all(
                messages,
                TransportError::transient("refused by the test"),
            ));
        }
        Ok(())
    }
}

/// A saga that starts fine and panics on every reply: its actor crashes on
/// each one, which the supervisor's crash-loop guard has to stop.
#[derive(Clone)]
pub struct Fragile {
    started: bool,
}

/// The fragile saga's (empty) start input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nothing {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FragileEvent {
    Started,
}

impl Saga for Fragile {
    type Kind = ();
    type Start = Nothing;
    type Event = FragileEvent;

    fn new(_kind: &Arc<()>, _id: SagaId) -> Self {
        Fragile { started: false }
    }

    fn decide(&self, input: Input<Nothing>) -> Result<Vec<FragileEvent>, Rejection> {
        match input {
            Input::Start { .. } => Ok(vec![FragileEvent::Started]),
            Input::Reply(reply) => panic!("cannot handle a reply for {}", reply.step),
            _ => Ok(Vec::new()),
        }
    }

    fn evolve(mut self, _event: &FragileEvent) -> Self {
        self.started = true;
        self
    }

    fn commands(&self, _event: &FragileEvent) -> Vec<Command> {
        Vec::new()
    }

    fn view(&self) -> View {
        View {
            status: Status::Running,
            step: Some("wait".to_owned()),
            attempt: Some(1),
            step_since: None,
            participant: None,
            max_attempts: None,
            wake_at: None,
            last_error: None,
        }
    }

    fn event_type(_event: &FragileEvent) -> String {
        "Started".to_owned()
    }

    fn allowed_actions(&self) -> Vec<&'static str> {
        vec!["cancel"]
    }

    fn explain(&self) -> Explanation {
        Explanation {
            waiting: None,
            progress: json!({}),
        }
    }
}
