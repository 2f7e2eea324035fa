//! A step's `when`: the step runs only when a value the saga knows passes
//! one test; otherwise it is skipped.

use std::collections::BTreeMap;

use serde_json::Value;

use super::document::ConditionDocument;
use super::template::{BadExpression, Expression};

/// A checked condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub value: Expression,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    NotEquals(Value),
    OneOf(Vec<Value>),
    Above(f64),
    Below(f64),
    Exists(bool),
}

impl Condition {
    /// Reads a condition; `Err` says what is wrong with it.
    pub fn parse(doc: &ConditionDocument) -> Result<Condition, String> {
        let value = match Expression::parse(&doc.value) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Err(format!(
                "`value` must be a `${{…}}` expression such as `${{input.amount_cents}}`, not `{}`",
                doc.value
            ))
            }
            Err(BadExpression(why)) => return Err(why),
        };
        let mut tests = Vec::new();
        if let Some(v) = &doc.equals {
            tests.push(Test::Equals(v.clone()));
        }
        if let Some(v) = &doc.not_equals {
            tests.push(Test::NotEquals(v.clone()));
        }
        if let Some(v) = &doc.one_of {
            tests.push(Test::OneOf(v.clone()));
        }
        if let Some(v) = doc.above {
            tests.push(Test::Above(v));
        }
        if let Some(v) = doc.below {
            tests.push(Test::Below(v));
        }
        if let Some(v) = doc.exists {
            tests.push(Test::Exists(v));
        }
        match <[Test; 1]>::try_from(tests) {
            Ok([test]) => Ok(Condition { value, test }),
            Err(tests) => Err(format!(
                "give exactly one test of equals, not_equals, one_of, above, below, exists; got {}",
                tests.len()
            )),
        }
    }

    /// Whether the condition holds for this input and these results.
    pub fn holds(&self, input: &Value, results: &BTreeMap<String, Value>) -> bool {
        let value = self.value.eval(input, results).filter(|v| !v.is_null());
        match &self.test {
            Test::Exists(wanted) => value.is_some() == *wanted,
            Test::Equals(v) => value == Some(v),
            Test::NotEquals(v) => value != Some(v),
            Test::OneOf(vs) => value.is_some_and(|x| vs.contains(x)),
            Test::Above(n) => value.and_then(Value::as_f64).is_some_and(|x| x > *n),
            Test::Below(n) => value.and_then(Value::as_f64).is_some_and(|x| x < *n),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(doc: Value) -> Result<Condition, String> {
        Condition::parse(&serde_json::from_value(doc).unwrap())
    }

    #[test]
    fn each_test_holds_or_not() {
        let input = json!({"amount": 150, "country": "DE", "vip": null});
        let results = BTreeMap::from([("check".to_owned(), json!({"score": 7}))]);
        let cases = [
            (json!({"value": "${input.amount}", "above": 100}), true),
            (json!({"value": "${input.amount}", "above": 150}), false),
            (json!({"value": "${input.amount}", "below": 200}), true),
            (json!({"value": "${input.country}", "equals": "DE"}), true),
            (
                json!({"value": "${input.country}", "not_equals": "DE"}),
                false,
            ),
            (
                json!({"value": "${input.country}", "one_of": ["FR", "DE"]}),
                true,
            ),
            (json!({"value": "${input.vip}", "exists": true}), false),
            (json!({"value": "${input.missing}", "exists": false}), true),
            (json!({"value": "${input.missing}", "above": 1}), false),
            (json!({"value": "${check.result.score}", "above": 5}), true),
        ];
        for (doc, expected) in cases {
            let c = condition(doc.clone()).unwrap();
            assert_eq!(c.holds(&input, &results), expected, "{doc}");
        }
    }

    #[test]
    fn a_condition_needs_one_test_and_an_expression() {
        let two = condition(json!({"value": "${input.a}", "above": 1, "below": 5})).unwrap_err();
        assert!(two.contains("exactly one test"), "{two}");
        let none = condition(json!({"value": "${input.a}"})).unwrap_err();
        assert!(none.contains("got 0"), "{none}");
        let constant = condition(json!({"value": "5", "above": 1})).unwrap_err();
        assert!(
            constant.contains("must be a `${…}` expression"),
            "{constant}"
        );
    }
}
