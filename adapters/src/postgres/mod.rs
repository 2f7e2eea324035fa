//! The PostgreSQL store: [`PgEventStore`] implements the orchestrator's
//! `EventStore` and `OperatorQueries` ports on one database.
//!
//! # Layout
//!
//! The modules form a ladder: each imports only the ones below it, and this
//! file only declares them and re-exports what is public. Bottom to top:
//!
//! 1. `rows` and `connect`, which import no other module of the store.
//!    `rows` maps `sqlx::Error` to `StoreError` (`db`), holds the rows read
//!    back (`SagaRow`, `OutboxRow`) and their column lists, the outcome of one
//!    step, and the dead-letter insert that several writes share. `connect`
//!    creates the database, opens the pool, applies [`MIGRATOR`] and checks
//!    that it is applied (readiness).
//! 2. `batch`: the SQL of writing steps. `batch::one` writes a step alone in
//!    one statement; `batch` writes many in one transaction, built from
//!    `batch::statements`, one set-based statement per kind of row.
//! 3. `committer`: group commit. It queues the steps on a thread of its own,
//!    forms batches and writes them, falling back to writing one step at a
//!    time when a batch fails ([`GroupCommit`] configures it).
//! 4. `store`: [`PgEventStore`] and its `EventStore` impl. Steps go to the
//!    committer. The other methods are grouped by concern, and each group's SQL
//!    lives in a file of its own (`store::history`, `store::outbox`,
//!    `store::timers`, with readiness in `connect`).
//! 5. `operator`: `OperatorQueries` (search, counts, dead letters) on the store.

mod batch;
mod committer;
mod connect;
mod counts;
mod operator;
mod rows;
mod store;

pub use committer::GroupCommit;
pub use connect::{ConnectError, MIGRATOR};
pub use store::PgEventStore;
