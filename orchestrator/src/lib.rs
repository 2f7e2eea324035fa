//! The application core: one actix actor per live saga, the supervisor that
//! creates and routes to them, the outbox relay and the timer service.
//!
//! # Layout
//!
//! Each module imports only those listed before it:
//!
//! - [`clock`], `trace`, `metrics`, `notifier`, `task`: leaves — the injectable
//!   [`Clock`], W3C trace context, Prometheus counters, settled-saga waiters,
//!   store calls an actor awaits run as runtime tasks.
//! - [`ports`]: what the core needs from the outside, split by who uses it —
//!   [`SagaStore`] (history and steps), [`OutboxStore`] (outbox and dead
//!   letters), [`TimerStore`] (timers and leases), [`OperatorQueries`], all of
//!   them one [`EventStore`]; and [`Transport`]. Adapters implement them.
//! - `input`: the vocabulary — `SagaInput`, [`Handled`], [`ActorError`],
//!   [`Inbound`], [`ActionReport`], [`StartOutcome`].
//! - [`codec`]: CloudEvents 1.0 for commands out and replies in, on every
//!   transport; [`codec::decode_for`] reads what any channel delivered.
//! - `definitions`: [`load_catalog`] — the saga definitions a node runs,
//!   stored once per version through [`DefinitionStore`].
//! - `messages`: the actor messages (`Handle`, `Route`, `Crashed`, `Gone`, `Publish`, `NotCommitted`).
//! - `config`: [`OrchestratorConfig`]; [`leases`]: which partitions this node serves.
//! - `positions`: where this process's steps with commands stand in its
//!   relay's log, and the watermark below which all are published.
//! - `relay`: publishes committed commands, retries with back-off, sweeps up
//!   rows left unsent; `timers`: turns due deadlines into wake-ups through a callback.
//! - `kind`: a registered saga type (its name, what its sagas share);
//!   `step`: one input is one atomic store write, commands leave only after it
//!   committed; `actor`: a saga's actor handles one input at a time;
//!   `supervisor`: creates saga actors on demand, passivates idle ones.
//! - [`Orchestrator`] (`orchestrator`, `dead_letters`): the operations the
//!   driving side (HTTP, inbound channels) uses; `builder`: wires it all up.
//! - `memory`: `MemoryStore`, an in-memory [`EventStore`], and `testing`:
//!   a recording transport and a saga that panics — for tests of the core that
//!   run in milliseconds on paused time (cargo feature `testing`).

mod actor;
mod builder;
pub mod clock;
pub mod codec;
mod config;
mod dead_letters;
mod definitions;
mod input;
mod kind;
pub mod leases;
#[cfg(feature = "testing")]
pub mod memory;
mod messages;
mod metrics;
mod notifier;
mod orchestrator;
pub mod ports;
mod positions;
mod relay;
mod retention;
mod step;
mod supervisor;
pub mod task;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;
mod trace;

pub use builder::OrchestratorBuilder;
pub use clock::{Clock, SharedClock, SystemClock, TokioClock};
pub use config::{OrchestratorConfig, Retention};
pub use dead_letters::{RedriveError, RedriveOutcome};
pub use definitions::{load_catalog, DefinitionsError};
pub use input::{ActionReport, ActorError, Handled, Inbound, Ingested, StartError, StartOutcome};
#[cfg(feature = "testing")]
pub use memory::MemoryStore;
pub use metrics::Metrics;
pub use notifier::Watch;
pub use orchestrator::Orchestrator;
pub use ports::{
    DefinitionStore, EventStore, OperatorQueries, OutboxStore, PublishError, SagaStore, StoreError,
    TimerStore, Transport, TransportError,
};
pub use supervisor::Snapshot;
pub use trace::TraceParent;
