//! Reading a definition from its TOML text or a stored document.

use super::check;
use super::document::Document;
use super::model::{Definition, DefinitionError, Problem};

/// The definitions shipped inside the binary: (file name, contents).
pub const SHIPPED: [(&str, &str); 2] = [
    (
        "order.v1.toml",
        include_str!("../../../definitions/order.v1.toml"),
    ),
    (
        "return.v1.toml",
        include_str!("../../../definitions/return.v1.toml"),
    ),
];

impl Definition {
    /// Reads and checks the TOML definition `text`; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Definition, DefinitionError> {
        let document: Document = toml::from_str(text).map_err(|e| DefinitionError {
            file: file.to_owned(),
            problems: vec![toml_problem(text, &e)],
        })?;
        Self::from_document(file, document)
    }

    /// Checks an already parsed document (e.g. one stored in the database).
    pub fn from_document(file: &str, document: Document) -> Result<Definition, DefinitionError> {
        check::check(document).map_err(|problems| DefinitionError {
            file: file.to_owned(),
            problems,
        })
    }

    /// The shipped definitions, checked.
    pub fn shipped() -> Vec<Definition> {
        SHIPPED
            .iter()
            .map(|(file, text)| Definition::from_toml(file, text).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }
}

/// A TOML error with its line and column.
fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            format!("line {line}, column {column}")
        }
        None => "document".to_owned(),
    };
    Problem::new(&at, &e.message().trim().replace('\n', "; "))
}
