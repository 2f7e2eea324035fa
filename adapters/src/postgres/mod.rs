//! The PostgreSQL store.

mod batch;
mod committer;
mod connect;
mod operator;
mod rows;
mod store;

pub use committer::GroupCommit;
pub use connect::{ConnectError, MIGRATOR};
pub use store::PgEventStore;
