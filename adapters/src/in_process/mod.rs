//! The default transport: commands go over an in-memory channel to simulated
//! participants, whose replies come back through the orchestrator like any
//! inbound message (inbox, de-duplication, dead letters).

mod participants;

use async_trait::async_trait;
use sagaplane_orchestrator::ports::{OutboxMessage, Transport, TransportError};
use tokio::sync::mpsc;

pub use participants::{SimulatedParticipants, SimulatorSettings};

/// The channel name inbound replies carry.
pub const CHANNEL: &str = "in-process";

pub struct InProcessTransport {
    tx: mpsc::UnboundedSender<OutboxMessage>,
}

impl InProcessTransport {
    /// The transport and the receiving end the participants read.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<OutboxMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), TransportError> {
        for m in messages {
            self.tx
                .send(m.clone())
                .map_err(|_| TransportError("the simulated participants have stopped".into()))?;
        }
        Ok(())
    }
}
