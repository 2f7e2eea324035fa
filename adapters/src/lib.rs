//! Driven-side adapters: implementations of the orchestrator's ports.
//!
//! # Layout
//!
//! - [`postgres`]: [`PgEventStore`], the event store, read model, outbox, inbox,
//!   timers and dead letters on PostgreSQL (sqlx), with embedded migrations.
//! - [`in_process`]: [`InProcessTransport`] and [`SimulatedParticipants`], the
//!   default set-up for local runs, demos, tests and benchmarks.
//! - [`eventbridge`]: [`EventBridgeTransport`], commands to AWS participants.
//! - [`eventgrid`]: [`EventGridTransport`], commands to participants behind
//!   an Azure Event Grid topic.
//! - [`servicebus`]: [`ServiceBusTransport`] and [`ServiceBusReceiver`], commands
//!   to and replies from Azure participants.
//! - [`routing`]: [`RoutingTransport`], which transport carries whose commands.

pub mod eventbridge;
pub mod eventgrid;
pub mod in_process;
pub mod postgres;
pub mod routing;
pub mod servicebus;

pub use eventbridge::{EventBridgeSettings, EventBridgeTransport};
pub use eventgrid::{EventGridAuth, EventGridSettings, EventGridTransport};
pub use in_process::{InProcessTransport, SimulatedParticipants, SimulatorRule, SimulatorSettings};
pub use postgres::{GroupCommit, PgEventStore};
pub use routing::{route_of, RoutingTransport};
pub use servicebus::{
    ServiceBusReceiver, ServiceBusReceiverSettings, ServiceBusSettings, ServiceBusTransport,
};
