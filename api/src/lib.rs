//! The driving side: the HTTP API (actix-web) and the composition root that
//! wires the store, the transport and the orchestrator into the `sagaplane`
//! binary.
//!
//! # Layout
//!
//! Each module imports only those listed before it:
//!
//! - [`configuration`]: the typed [`Settings`], from defaults, an optional TOML
//!   file and `SAGAPLANE_…` environment variables; [`telemetry`]: the tracing
//!   subscriber.
//! - [`private_postgres`]: the PostgreSQL server `serve` runs for itself when
//!   no database is configured and none answers at the default address.
//! - `problem`: RFC 9457 error bodies, and how the orchestrator's errors read
//!   over HTTP; `exposition`: the `/metrics` registry and its gauges.
//! - `state`: `AppState`, what every request handler can reach; [`auth`]:
//!   bearer tokens and roles, failing closed.
//! - `routes`: one module per resource (and, for `/v1/sagas`, per verb), the
//!   route table and the OpenAPI document. Handlers only translate: parse the
//!   request, call the orchestrator's operations (or, to list and count, the
//!   operator queries), shape the answer.
//! - `console`: the operator console's static files, served from the binary
//!   (it only uses the HTTP API, from the browser).
//! - [`startup`]: the composition root — [`Application::build`] wires the
//!   store, the transports and the orchestrator and binds the listener.
//! - [`bench`]: `sagaplane bench`, the fixed workload over HTTP; [`cli`]:
//!   `sagaplane sagas …` and `sagaplane dead-letters …` for operators.

pub mod auth;
pub mod bench;
mod body;
pub mod cli;
pub mod configuration;
mod connection;
mod console;
pub mod definitions;
mod exposition;
mod json;
mod prefer;
#[cfg(unix)]
pub mod private_postgres;
mod problem;
mod procfs;
mod routes;
pub mod startup;
mod state;
pub mod telemetry;

pub use configuration::Settings;
pub use routes::{ApiDoc, ROUTES};
pub use startup::Application;
