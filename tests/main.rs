//! Black-box tests of the orchestrator: the HTTP API against a real PostgreSQL,
//! each test on a fresh database, and the real binary killed and restarted.

mod access;
mod bad_definitions;
mod bad_input;
mod bench;
mod cli;
mod console;
mod crash_loop;
mod cross_cloud;
mod dead_letters;
mod definitions;
mod definitions_api;
mod eventbridge;
mod eventgrid;
mod eventgrid_fake;
mod groups;
mod helpers;
mod idempotency;
mod ingress;
mod jwt;
mod kill;
mod migrate;
mod observability;
mod openapi;
mod operators;
#[cfg(feature = "otlp")]
mod otlp;
mod prefer;
mod private_postgres;
mod relay;
mod replies;
mod restart;
mod retention;
mod returns;
mod sagas;
mod schemathesis;
mod server;
mod servicebus;
mod servicebus_fake;
mod simulator;
mod slow_clients;
mod three_nodes;
mod timeouts;
mod trace;
mod two_nodes;
mod versions;
