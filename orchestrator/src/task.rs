//! Work an actor awaits that holds a database connection runs as a task of
//! the tokio runtime, not of the actor's arbiter.
//!
//! Both end when the system does, but they are dropped differently: the
//! runtime drops its tasks inside itself, where a pooled connection a task
//! holds can go back to its pool, while an arbiter's local tasks are dropped
//! after the runtime has been left, where the same connection panics
//! ("requires a Tokio context"). A system stopped with a store call in flight
//! (a test ending, the process exiting) must end quietly.

use std::future::Future;

/// Runs `fut` as a runtime task and waits for it. A panic in it is resumed
/// here, so a caller that catches panics still sees it.
pub(crate) async fn detached<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(fut).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled, which only the runtime's shutdown does: that ends the
        // caller too, before it could use an answer.
        Err(_) => std::future::pending().await,
    }
}
