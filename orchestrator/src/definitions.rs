//! Which saga definitions a node runs: the ones it was given (shipped and
//! from files), stored if new, together with every version stored before —
//! so a saga runs under its version even after the file is gone, and every
//! node sharing the database sees the same versions.

use sagaplane_sagas::definition::{Catalog, Definition, DefinitionError, Document};

use crate::ports::{DefinitionStore, StoreError, StoredDefinition};

/// Why the definitions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error(
        "{file}: version {version} of saga type `{saga_type}` is already stored (from {stored_from}) \
         with other content; a version never changes once loaded: give the changed definition a new version"
    )]
    Changed {
        file: String,
        saga_type: String,
        version: u32,
        stored_from: String,
    },
    #[error(
        "{file} and {other} both define version {version} of saga type `{saga_type}`, differently"
    )]
    Twice {
        file: String,
        other: String,
        saga_type: String,
        version: u32,
    },
    #[error("a stored definition cannot be read: {0}")]
    Stored(#[from] DefinitionError),
    #[error("the definitions could not be stored: {0}")]
    Store(#[from] StoreError),
}

/// Stores the `offered` definitions (file name, definition) that are new and
/// returns the catalog of every stored version. A file whose version is
/// stored with other content is refused, naming the file.
pub async fn load_catalog(
    store: &dyn DefinitionStore,
    offered: Vec<(String, Definition)>,
) -> Result<Catalog, DefinitionsError> {
    let rows: Vec<StoredDefinition> = offered
        .iter()
        .map(|(file, d)| StoredDefinition {
            saga_type: d.saga_type.clone(),
            version: d.version,
            hash: d.hash.clone(),
            source: file.clone(),
            document: serde_json::to_value(&d.document).expect("a document serialises"),
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let twin = rows[..i].iter().find(|o| o.conflicts_with(row));
        if let Some(other) = twin {
            return Err(DefinitionsError::Twice {
                file: row.source.clone(),
                other: other.source.clone(),
                saga_type: row.saga_type.clone(),
                version: row.version,
            });
        }
    }
    let stored = store.publish_definitions(&rows).await?;
    for row in &rows {
        let changed = stored.iter().find(|s| s.conflicts_with(row));
        if let Some(s) = changed {
            return Err(DefinitionsError::Changed {
                file: row.source.clone(),
                saga_type: row.saga_type.clone(),
                version: row.version,
                stored_from: s.source.clone(),
            });
        }
    }
    let mut catalog = Catalog::default();
    for s in stored {
        let label = format!(
            "{} (stored version {} of `{}`)",
            s.source, s.version, s.saga_type
        );
        let document: Document =
            serde_json::from_value(s.document).map_err(|e| DefinitionError {
                file: label.clone(),
                problems: vec![sagaplane_sagas::definition::Problem {
                    at: "document".into(),
                    message: e.to_string(),
                }],
            })?;
        let definition = Definition::from_document(&label, document)?;
        catalog
            .add(definition)
            .expect("stored versions are distinct by (type, version)");
    }
    Ok(catalog)
}
