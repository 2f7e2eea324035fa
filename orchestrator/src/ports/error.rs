//! How a store fails.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended first: decide again on fresh state.
    #[error("the saga's version moved on; the step must be decided again")]
    Conflict,
    /// The relay the step's commands were to go through was taken over (its
    /// process was thought gone): nothing was written; the step is decided
    /// again once the relay has recorded itself anew.
    #[error("this process's outbox relay was taken over; the step must be decided again")]
    RelayGone,
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the database failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}
