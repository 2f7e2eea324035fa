//! Driven-side adapters: implementations of the orchestrator's ports.
//!
//! # Layout
//!
//! - [`postgres`]: [`PgEventStore`], the event store, read model, outbox, inbox,
//!   timers and dead letters on PostgreSQL (sqlx), with embedded migrations.
//! - [`in_process`]: [`InProcessTransport`] and [`SimulatedParticipants`], the
//!   default set-up for local runs, demos, tests and benchmarks.
//! - [`eventbridge`]: [`EventBridgeTransport`], commands to AWS participants.
//! - [`servicebus`]: [`ServiceBusTransport`] and [`ServiceBusReceiver`], commands
//!   to and replies from Azure participants.
//! - [`routing`]: [`RoutingTransport`], which transport carries whose commands.

pub mod eventbridge;
pub mod in_process;
pub mod postgres;
pub mod routing;
pub mod servicebus;

pub use eventbridge::{EventBridgeSettings, EventBridgeTransport};
pub use in_process::{InProcessTransport, SimulatedParticipants, SimulatorRule, SimulatorSettings};
pub use postgres::{GroupCommit, PgEventStore};
pub use routing::{route_of, RoutingTransport};
pub use servicebus::{
    ServiceBusReceiver, ServiceBusReceiverSettings, ServiceBusSettings, ServiceBusTransport,
};
