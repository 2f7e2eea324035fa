//! The ports the core drives; adapters implement them.
//!
//! The store is split by who uses which part: a saga's actor reads and writes
//! its history ([`SagaStore`]), the relay and the ingresses the outbox and
//! dead letters ([`OutboxStore`]), the timer service and the lease keeper the
//! timers and leases ([`TimerStore`]), operators their queries
//! ([`OperatorQueries`]). [`EventStore`] is all four, which is what an
//! orchestrator is built on. Saga definitions are kept apart
//! ([`DefinitionStore`]): they are read once, when a node starts.

mod definitions;
mod error;
mod history;
mod operator;
mod outbox;
mod timers;
mod transport;

use async_trait::async_trait;

pub use definitions::{DefinitionStore, StoredDefinition};
pub use error::StoreError;
pub use history::{
    CommitOutcome, EventRecord, NewEvent, NewSaga, SagaRecord, SagaStore, StepCommit,
    StoredHistory, SUSPENDED_BY_SUPERVISOR,
};
pub use operator::{
    CommandRecord, CommandRef, DeadLetterRecord, InboxRecord, OperatorQueries, Resolution,
    SagaFilter, SagaStats,
};
pub use outbox::{Backlog, DeadLetter, OutboxMessage, OutboxStore, PublishFailure, EPOCH_SHIFT};
pub use timers::{DueTimer, TimerStore};
pub use transport::{PublishError, Transport, TransportError};

/// Durable history, read model, outbox, inbox, timers and the saga
/// definitions: one database.
#[async_trait]
pub trait EventStore:
    SagaStore + OutboxStore + TimerStore + OperatorQueries + DefinitionStore
{
    /// `Err` says why the store cannot serve (unreachable, schema not current).
    async fn ready(&self) -> Result<(), String>;
}

/// Every port trait, so their methods can be called on any store or
/// transport: `use sagaplane_orchestrator::ports::prelude::*;`.
pub mod prelude {
    pub use super::{
        DefinitionStore, EventStore, OperatorQueries, OutboxStore, SagaStore, TimerStore, Transport,
    };
}
