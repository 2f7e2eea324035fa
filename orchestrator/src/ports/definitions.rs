//! Where saga definitions are kept, so that every node sharing a database
//! runs the same versions, and a version outlives the file it came from.

use async_trait::async_trait;
use serde_json::Value;

use super::error::StoreError;

/// One version of one saga type as stored: never changed once stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    pub saga_type: String,
    pub version: u32,
    /// The content's hash (see `sagaplane_sagas::Definition::hash`).
    pub hash: String,
    /// The file it was first loaded from, e.g. `order.v1.toml`.
    pub source: String,
    /// The definition document as JSON.
    pub document: Value,
}

impl StoredDefinition {
    /// The same type and version as `other`, with other content: a version
    /// changed after it was stored.
    pub fn conflicts_with(&self, other: &StoredDefinition) -> bool {
        (&self.saga_type, self.version) == (&other.saga_type, other.version)
            && self.hash != other.hash
    }
}

#[async_trait]
pub trait DefinitionStore: Send + Sync {
    /// Stores each of `offered` whose (type, version) is not stored yet — a
    /// stored version is never replaced — and returns every stored
    /// definition. All or nothing: when any offered version is stored with
    /// another hash, none is stored (the answer shows the stored one).
    /// Concurrent callers store in (type, version) order.
    async fn publish_definitions(
        &self,
        offered: &[StoredDefinition],
    ) -> Result<Vec<StoredDefinition>, StoreError>;
}
