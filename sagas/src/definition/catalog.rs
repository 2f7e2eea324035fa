//! Every loaded version of every saga type. A version never changes once
//! loaded: the same number with other content is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::Definition;

/// The versions of one saga type, what its engine resolves a saga's version in.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeVersions {
    pub saga_type: String,
    pub versions: BTreeMap<u32, Arc<Definition>>,
}

impl TypeVersions {
    pub fn get(&self, version: u32) -> Option<&Arc<Definition>> {
        self.versions.get(&version)
    }

    /// Why `version` cannot be had: it is not loaded, and which are.
    pub fn not_loaded(&self, version: u32) -> String {
        let loaded: Vec<String> = self.versions.keys().map(u32::to_string).collect();
        format!(
            "saga type `{}` has no version {version}; loaded: {}",
            self.saga_type,
            loaded.join(", ")
        )
    }

    /// The highest version: what a start that names none gets.
    pub fn newest(&self) -> &Arc<Definition> {
        self.versions
            .values()
            .next_back()
            .expect("a type has at least one version")
    }
}

/// All saga types, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    types: BTreeMap<String, Arc<TypeVersions>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "version {version} of saga type `{saga_type}` is already loaded with other content \
         (hash {existing}, this one {offered}); a version never changes: give this one a new version"
    )]
    Changed {
        saga_type: String,
        version: u32,
        existing: String,
        offered: String,
    },
}

impl Catalog {
    /// Adds `definition`; the same version again with the same content is fine.
    pub fn add(&mut self, definition: Definition) -> Result<(), CatalogError> {
        let versions = self
            .types
            .entry(definition.saga_type.clone())
            .or_insert_with(|| {
                Arc::new(TypeVersions {
                    saga_type: definition.saga_type.clone(),
                    versions: BTreeMap::new(),
                })
            });
        match versions.versions.get(&definition.version) {
            Some(existing) if existing.hash != definition.hash => Err(CatalogError::Changed {
                saga_type: definition.saga_type.clone(),
                version: definition.version,
                existing: existing.hash.clone(),
                offered: definition.hash,
            }),
            Some(_) => Ok(()),
            None => {
                Arc::make_mut(versions)
                    .versions
                    .insert(definition.version, Arc::new(definition));
                Ok(())
            }
        }
    }

    /// A catalog of the definitions shipped inside the binary.
    pub fn shipped() -> Catalog {
        let mut catalog = Catalog::default();
        for definition in Definition::shipped() {
            catalog
                .add(definition)
                .expect("the shipped definitions are distinct");
        }
        catalog
    }

    pub fn get(&self, saga_type: &str) -> Option<&Arc<TypeVersions>> {
        self.types.get(saga_type)
    }

    pub fn types(&self) -> impl Iterator<Item = &Arc<TypeVersions>> {
        self.types.values()
    }

    /// Every (participant, command type) any loaded definition sends to.
    pub fn destinations(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .types
            .values()
            .flat_map(|t| t.versions.values())
            .flat_map(|d| {
                d.actions()
                    .map(|a| (a.participant.clone(), a.command_type.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
