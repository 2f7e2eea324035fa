//! The PostgreSQL store.

mod batch;
mod committer;
mod connect;
mod operator;
mod queries;
mod rows;

pub use committer::GroupCommit;
pub use connect::{ConnectError, MIGRATOR};
pub use queries::PgEventStore;
