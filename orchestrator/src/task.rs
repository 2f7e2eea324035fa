//! Work an actor awaits that holds a database connection runs as a task of
//! the tokio runtime, not of the actor's arbiter. A store whose own calls
//! take a connection for their caller (the PostgreSQL committer's step
//! written alone) uses it too, whoever the caller is.
//!
//! Both end when the system does, but they are dropped differently: the
//! runtime drops its tasks inside itself, where a pooled connection a task
//! holds can go back to its pool, while an arbiter's local tasks are dropped
//! after the runtime has been left, where the same connection panics
//! ("requires a Tokio context"). A system stopped with a store call in flight
//! (a test ending, the process exiting) must end quietly.

use std::future::Future;

use tracing::Instrument;

/// Runs `fut` as a runtime task, in the caller's span, and waits for it. A
/// panic in it is resumed here, so a caller that catches panics still sees it.
pub async fn detached<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(fut.in_current_span()).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only the runtime's shutdown does that, and an arbiter's
        // local tasks (the caller among them) are dropped before it.
        Err(_) => unreachable!("a runtime task cancelled while its caller still waits"),
    }
}
