//! JSON Schemas inside a definition: the start input's and each reply
//! result's, compiled once when the definition is loaded.

use std::fmt;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::FieldError;

/// A compiled JSON Schema together with the document it was compiled from.
#[derive(Clone)]
pub struct Schema {
    document: Value,
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schema").field(&self.document).finish()
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.document == other.document
    }
}

impl Schema {
    /// Compiles `document`; `Err` says where in it (a dot path, empty for
    /// the whole) and why it is no JSON Schema.
    pub fn compile(document: Value) -> Result<Schema, (String, String)> {
        let validator = jsonschema::options().build(&document).map_err(|e| {
            let at = field_path("", e.instance_path().as_str());
            let at = at.trim_start_matches('.').to_owned();
            let message = if at == "type" || at.ends_with(".type") {
                format!(
                    "{} is not a JSON Schema type (array, boolean, integer, null, number, \
                     object, string) nor a list of them",
                    e.instance()
                )
            } else {
                e.to_string()
            };
            (at, message)
        })?;
        Ok(Schema {
            document,
            validator: Arc::new(validator),
        })
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Every violation in `instance`, each naming its field below `root`
    /// (`input.items[0].qty`).
    pub fn check(&self, instance: &Value, root: &str) -> Result<(), Vec<FieldError>> {
        let errors: Vec<FieldError> = self
            .validator
            .iter_errors(instance)
            .map(|e| self.field_error(&e, root))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn field_error(&self, e: &jsonschema::ValidationError<'_>, root: &str) -> FieldError {
        let field = field_path(root, e.instance_path().as_str());
        let got = e.instance();
        let (field, message) = match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => (
                format!("{field}.{}", unexpected.join(",")),
                "unknown field".to_owned(),
            ),
            ValidationErrorKind::Required { property } => (
                field,
                format!("missing field `{}`", property.as_str().unwrap_or_default()),
            ),
            ValidationErrorKind::Type { kind } => {
                (field, format!("invalid type: expected {kind:?}, got {got}"))
            }
            ValidationErrorKind::MinItems { limit } => {
                (field, format!("must hold at least {}", items(*limit)))
            }
            ValidationErrorKind::MaxItems { limit } => {
                (field, format!("must hold at most {}", items(*limit)))
            }
            ValidationErrorKind::Minimum { limit } => {
                (field, format!("must be at least {limit}, got {got}"))
            }
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                (field, format!("must be greater than {limit}, got {got}"))
            }
            _ => (field, e.to_string()),
        };
        // The schema's own word on what is expected, where it has one.
        let described = self
            .description(e.schema_path().as_str())
            .map_or(message.clone(), |d| format!("{message} ({d})"));
        FieldError::new(field, described)
    }

    /// The `description` of the schema that holds the failed keyword.
    fn description(&self, keyword_path: &str) -> Option<&str> {
        let parent = keyword_path.rsplit_once('/').map_or("", |(p, _)| p);
        self.document
            .pointer(parent)
            .and_then(|s| s.get("description"))
            .and_then(Value::as_str)
    }
}

fn items(n: u64) -> String {
    if n == 1 {
        "one item".to_owned()
    } else {
        format!("{n} items")
    }
}

/// `/items/0/qty` below `input` → `input.items[0].qty`.
fn field_path(root: &str, pointer: &str) -> String {
    let mut field = root.to_owned();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            field.push_str(&format!("[{segment}]"));
        } else {
            field.push('.');
            field.push_str(&segment);
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_violation_names_its_field() {
        let schema = Schema::compile(json!({
            "type": "object",
            "required": ["id", "items"],
            "additionalProperties": false,
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "items": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {"qty": {"type": "integer", "minimum": 1,
                                           "description": "how many"}}
                }}
            }
        }))
        .unwrap();
        assert_eq!(
            schema.check(&json!({"id": "a", "items": [{"qty": 1}]}), "input"),
            Ok(())
        );
        let errors = schema
            .check(&json!({"items": [{"qty": 0}], "colour": 1}), "input")
            .unwrap_err();
        let mut fields: Vec<(String, String)> =
            errors.into_iter().map(|e| (e.field, e.message)).collect();
        fields.sort();
        assert_eq!(fields[0].0, "input");
        assert!(fields[0].1.contains("missing field `id`"), "{fields:?}");
        assert_eq!(fields[1].0, "input.colour");
        assert_eq!(fields[1].1, "unknown field");
        assert_eq!(fields[2].0, "input.items[0].qty");
        assert_eq!(fields[2].1, "must be at least 1, got 0 (how many)");
    }

    #[test]
    fn a_schema_that_is_no_schema_is_refused() {
        assert!(Schema::compile(json!({"type": "colour"})).is_err());
        assert!(Schema::compile(json!({"minimum": "ten"})).is_err());
    }
}
