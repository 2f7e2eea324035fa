//! The driving side: the HTTP API (actix-web) and the composition root that
//! wires the store, the transport and the orchestrator into the `sagaplane`
//! binary.
//!
//! # Layout
//!
//! - [`configuration`]: the typed [`Settings`], from defaults, an optional TOML
//!   file and `SAGAPLANE_…` environment variables.
//! - [`startup`]: [`Application::build`] binds the listener and starts everything.
//! - `state`: `AppState`, what every request handler can reach.
//! - `routes`: one module per resource, the route table and the OpenAPI
//!   document; `problem`: RFC 9457 error bodies; [`auth`]: bearer tokens and roles.
//! - [`telemetry`]: the tracing subscriber.
//! - [`bench`]: `sagaplane bench`, the fixed workload over HTTP.
//! - [`cli`]: `sagaplane sagas …` and `sagaplane dead-letters …` for operators.
//!
//! Imports go one way, down the ladder `startup` → `routes` → `auth`, `state`
//! → `configuration`, `problem` (save `state`'s naming of the `/metrics`
//! registry type, which still lives in `routes`).

pub mod auth;
pub mod bench;
pub mod cli;
pub mod configuration;
mod problem;
mod routes;
pub mod startup;
mod state;
pub mod telemetry;

pub use configuration::Settings;
pub use routes::{ApiDoc, ROUTES};
pub use startup::Application;
