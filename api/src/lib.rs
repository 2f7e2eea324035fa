//! The driving side: the HTTP API (actix-web) and the composition root that
//! wires the store, the transport and the orchestrator into the `sagaplane`
//! binary.
//!
//! # Layout
//!
//! - [`configuration`]: the typed [`Settings`], from defaults, an optional TOML
//!   file and `SAGAPLANE_…` environment variables.
//! - [`startup`]: [`Application::build`] binds the listener and starts everything.
//! - `routes`: one module per resource, the route table and the OpenAPI
//!   document; `problem`: RFC 9457 error bodies; [`auth`]: bearer tokens and roles.
//! - [`telemetry`]: the tracing subscriber.
//! - [`bench`]: `sagaplane bench`, the fixed workload over HTTP.
//! - [`cli`]: `sagaplane sagas …` and `sagaplane dead-letters …` for operators.

pub mod auth;
pub mod bench;
pub mod cli;
pub mod configuration;
mod problem;
mod routes;
pub mod startup;
pub mod telemetry;

pub use configuration::Settings;
pub use routes::{ApiDoc, ROUTES};
pub use startup::Application;
