//! Saga types as data: a team writes a definition file (TOML), sagaplane
//! checks it whole and the [engine](crate::engine) runs it.
//!
//! - `document`: the file's shape as written.
//! - `template`: `${…}` expressions in a command's `data`.
//! - `condition`: a step's `when`, the test under which it runs.
//! - `schema`: JSON Schemas of start inputs and reply results.
//! - `model`: the checked [`Definition`]; `load`: from TOML text or a stored
//!   document, and the shipped definitions.
//! - `check`: every cross-reference checked, each error with its place.
//! - `catalog`: the loaded versions of every type.

mod catalog;
mod check;
mod condition;
pub mod document;
mod load;
mod model;
mod schema;
pub mod template;

pub use catalog::{Catalog, CatalogError, TypeVersions};
pub use condition::{Condition, Test};
pub use document::{
    ActionDocument, ConditionDocument, Document, LateReply, RetryDocument, StepDocument,
};
pub use load::SHIPPED;
pub use model::{
    Action, Definition, DefinitionError, Problem, Role, Step, DEFAULT_EVENT, RESERVED_EVENTS,
};
pub use schema::Schema;
pub use template::render;

#[cfg(test)]
mod tests;
