//! JSON values a live saga keeps as their compact text.
//!
//! A saga reads its start input and its steps' results only to fill in a
//! command's data or to test a step's `when`. Parsed, every JSON object is a
//! B-tree node of several hundred bytes, for every live saga: an order's
//! input alone took about 1.5 KiB. As text it takes what it prints to.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// One JSON value as its compact text.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    pub fn new(value: &Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    /// The value, parsed again.
    pub fn value(&self) -> Value {
        // The text was printed from a value, and every value a saga holds was
        // read from JSON text within the parser's nesting limit.
        serde_json::from_str(&self.0).expect("a printed JSON value reads back")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the forward steps' replies returned, by step name: few entries,
/// each kept as its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Results(Vec<(Box<str>, JsonText)>);

impl Results {
    pub fn get(&self, step: &str) -> Option<&JsonText> {
        self.0.iter().find(|(s, _)| &**s == step).map(|(_, r)| r)
    }

    /// Keeps `result` as what `step` returned, in place of any earlier one.
    pub fn insert(&mut self, step: &str, result: &Value) {
        let text = JsonText::new(result);
        match self.0.iter_mut().find(|(s, _)| &**s == step) {
            Some((_, r)) => *r = text,
            None => {
                self.0.push((step.into(), text));
                self.0.shrink_to_fit();
            }
        }
    }

    /// Every result parsed, for templates and conditions to read.
    pub fn parsed(&self) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .map(|(step, r)| (step.to_string(), r.value()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_reads_back_from_its_text() {
        for value in [
            json!(null),
            json!({"order_id": "o-1", "items": [{"sku": "A", "qty": 2}], "amount": 12.5}),
            json!({"big": u64::MAX, "small": i64::MIN, "f": 0.1, "e": 1e300, "s": "é\"\\\n"}),
            json!([[[]], {}, "", -0.0]),
        ] {
            let text = JsonText::new(&value);
            assert_eq!(text.value(), value);
            assert_eq!(text.as_str(), value.to_string());
        }
    }

    #[test]
    fn a_later_result_of_a_step_replaces_its_earlier_one() {
        let mut results = Results::default();
        results.insert("charge", &json!({"id": 1}));
        results.insert("ship", &json!("s-1"));
        results.insert("charge", &json!({"id": 2}));
        assert_eq!(
            results.get("charge").map(JsonText::value),
            Some(json!({"id": 2}))
        );
        assert_eq!(results.get("other"), None);
        assert_eq!(
            results.parsed(),
            BTreeMap::from([
                ("charge".to_owned(), json!({"id": 2})),
                ("ship".to_owned(), json!("s-1")),
            ])
        );
    }
}
