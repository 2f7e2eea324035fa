//! The application core: one actix actor per live saga, the supervisor that
//! creates and routes to them, the outbox relay and the timer service.
//!
//! # Layout
//!
//! - [`ports`]: what the core needs from the outside — [`EventStore`] (durable
//!   history, read model, outbox, inbox, timers) and [`Transport`] (delivery of
//!   commands). Adapters implement them.
//! - `actor`: [`SagaActor`] handles one input at a time; `step`: each input is
//!   one atomic store write, and commands leave only after it committed.
//! - `supervisor`: creates saga actors on demand, passivates idle ones.
//! - `relay`: publishes committed outbox rows and sweeps up any left unsent.
//! - [`codec`]: CloudEvents 1.0 for commands out and replies in, on every transport.
//! - [`leases`]: which partitions' timers and unsent commands this node looks after.
//! - `timers`: turns due deadlines stored in PostgreSQL into `Wake` inputs.
//! - [`Metrics`]: what all of them count, for Prometheus.
//! - [`Orchestrator`]: the handle the driving side (HTTP, inbound channels) uses.

mod actor;
pub mod clock;
pub mod codec;
mod handle;
pub mod leases;
mod metrics;
mod notifier;
pub mod ports;
mod relay;
mod step;
mod supervisor;
mod timers;
mod trace;

pub use actor::{ActorError, Handled, SagaActor, SagaInput};
pub use handle::{
    ActionReport, Inbound, Orchestrator, OrchestratorBuilder, OrchestratorConfig, StartError,
    StartOutcome,
};
pub use metrics::Metrics;
pub use notifier::SettledNotifier;
pub use ports::{EventStore, OperatorQueries, PublishError, StoreError, Transport, TransportError};
pub use supervisor::Snapshot;
pub use trace::TraceParent;
