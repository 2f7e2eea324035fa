//! How a store fails.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended first: decide again on fresh state.
    #[error("the saga's version moved on; the step must be decided again")]
    Conflict,
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the database failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}
