//! The driving side: the HTTP API (actix-web) and the composition root that
//! wires the store, the transport and the orchestrator into the `sagaplane`
//! binary.
//!
//! # Layout
//!
//! - [`configuration`]: the typed [`Settings`], from defaults, an optional TOML
//!   file and `SAGAPLANE_…` environment variables.
//! - [`startup`]: [`Application::build`] binds the listener and starts everything.
//! - `routes`: one module per resource; `problem`: RFC 9457 error bodies.
//! - [`telemetry`]: the tracing subscriber.
//! - [`bench`]: `sagaplane bench`, the fixed workload over HTTP.

pub mod bench;
pub mod configuration;
mod problem;
mod routes;
pub mod startup;
pub mod telemetry;

pub use configuration::Settings;
pub use startup::Application;
