//! The default transport: commands go over an in-memory channel to simulated
//! participants, whose replies come back through the orchestrator like any
//! inbound message (inbox, de-duplication, dead letters).

mod participants;
mod rules;
mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sagaplane_orchestrator::ports::{OutboxMessage, PublishError, Transport, TransportError};
use tokio::sync::mpsc;

pub use participants::{SimulatedParticipants, CHANNEL};
pub use settings::{InvalidRule, RuleProblem, SimulatorRule, SimulatorSettings};

pub struct InProcessTransport {
    tx: mpsc::UnboundedSender<OutboxMessage>,
    reachable: Arc<AtomicBool>,
}

impl InProcessTransport {
    /// The transport to `participants` and the receiving end they read.
    pub fn new(
        participants: &SimulatedParticipants,
    ) -> (Self, mpsc::UnboundedReceiver<OutboxMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let reachable = participants.reachability();
        (Self { tx, reachable }, rx)
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        if !self.reachable.load(Ordering::Relaxed) {
            let down = TransportError::transient("the simulated participants are unreachable");
            return Err(PublishError::all(messages, down));
        }
        for (i, m) in messages.iter().enumerate() {
            if self.tx.send(m.clone()).is_err() {
                let stopped = TransportError::transient("the simulated participants have stopped");
                return Err(PublishError::all(&messages[i..], stopped));
            }
        }
        Ok(())
    }
}
