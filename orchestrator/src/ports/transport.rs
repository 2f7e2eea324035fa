//! The transport port: how committed commands reach participants.

use async_trait::async_trait;
use uuid::Uuid;

use super::outbox::OutboxMessage;

/// Why a transport did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransportError {
    pub reason: String,
    /// Retrying cannot help (e.g. the message is too large for the broker).
    pub permanent: bool,
}

impl TransportError {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: false,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: true,
        }
    }
}

/// The messages of a batch a transport did not take; the others were delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} message(s) not published", failed.len())]
pub struct PublishError {
    pub failed: Vec<(Uuid, TransportError)>,
}

impl PublishError {
    /// Every message of the batch failed for the same reason (e.g. the broker is down).
    pub fn all(messages: &[OutboxMessage], error: TransportError) -> Self {
        Self {
            failed: messages
                .iter()
                .map(|m| (m.message_id, error.clone()))
                .collect(),
        }
    }
}

/// Delivers committed commands to participants.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError>;
}
