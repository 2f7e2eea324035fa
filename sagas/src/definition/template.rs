//! A command's `data` as a template: every string that is exactly `${path}`
//! is replaced by the value it names, e.g. `${input.order_id}` or
//! `${charge-payment.result.charge_id}`; a path that finds nothing gives `null`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where a `${…}` expression reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Input,
    /// The result of the forward step with this name.
    Result(String),
}

/// One `${…}` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub source: Source,
    /// Object keys or array indexes below the source.
    pub path: Vec<String>,
}

/// A template string that is not a well-formed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadExpression(pub String);

impl Expression {
    /// Reads `${input…}` or `${<step>.result…}`; `Ok(None)` for a string with
    /// no `${` at all (a constant).
    pub fn parse(text: &str) -> Result<Option<Expression>, BadExpression> {
        if !text.contains("${") {
            return Ok(None);
        }
        let inner = text
            .strip_prefix("${")
            .and_then(|t| t.strip_suffix('}'))
            .filter(|t| !t.contains("${") && !t.contains('}'))
            .ok_or_else(|| {
                BadExpression(format!(
                    "`{text}` must be a whole `${{…}}` expression such as `${{input.order_id}}`"
                ))
            })?;
        let mut segments = inner.split('.').map(str::trim);
        let root = segments.next().unwrap_or_default();
        let rest: Vec<String> = segments.map(str::to_owned).collect();
        if rest.iter().any(String::is_empty) || root.is_empty() {
            return Err(BadExpression(format!("`{text}` has an empty path segment")));
        }
        if root == "input" {
            return Ok(Some(Expression {
                source: Source::Input,
                path: rest,
            }));
        }
        match rest.split_first() {
            Some((result, path)) if result == "result" => Ok(Some(Expression {
                source: Source::Result(root.to_owned()),
                path: path.to_vec(),
            })),
            _ => Err(BadExpression(format!(
                "`{text}` must read `input…` or `<step>.result…`"
            ))),
        }
    }

    /// The value the expression reads, if there is one.
    pub fn eval<'a>(
        &self,
        input: &'a Value,
        results: &'a BTreeMap<String, Value>,
    ) -> Option<&'a Value> {
        let root = match &self.source {
            Source::Input => input,
            Source::Result(step) => results.get(step)?,
        };
        lookup(root, &self.path)
    }
}

/// The value at `path` below `root` (keys of objects, indexes of arrays).
pub fn lookup<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Every expression in `template`, with its place (`data.items`).
pub fn expressions(
    template: &Value,
    at: &str,
    out: &mut Vec<(String, Result<Expression, BadExpression>)>,
) {
    match template {
        Value::String(s) => match Expression::parse(s) {
            Ok(Some(e)) => out.push((at.to_owned(), Ok(e))),
            Ok(None) => {}
            Err(e) => out.push((at.to_owned(), Err(e))),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                expressions(item, &format!("{at}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                expressions(value, &format!("{at}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// `template` with every expression replaced by what it reads. Templates are
/// checked when the definition is loaded, so a malformed one stays as written.
pub fn render(template: &Value, input: &Value, results: &BTreeMap<String, Value>) -> Value {
    match template {
        Value::String(s) => match Expression::parse(s) {
            Ok(Some(e)) => e.eval(input, results).cloned().unwrap_or(Value::Null),
            _ => template.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render(item, input, results))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render(v, input, results)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn expressions_read_the_input_and_earlier_results() {
        let template = json!({
            "order": "${input.order_id}",
            "first_sku": "${input.items.0.sku}",
            "charge": "${charge-payment.result.charge_id}",
            "missing": "${input.nothing.here}",
            "constant": "EUR",
            "list": ["${input.order_id}", 5]
        });
        let input = json!({"order_id": "o-1", "items": [{"sku": "A"}]});
        let results = BTreeMap::from([("charge-payment".to_owned(), json!({"charge_id": "ch-9"}))]);
        assert_eq!(
            render(&template, &input, &results),
            json!({
                "order": "o-1", "first_sku": "A", "charge": "ch-9", "missing": null,
                "constant": "EUR", "list": ["o-1", 5]
            })
        );
    }

    #[test]
    fn a_malformed_expression_is_named() {
        for bad in [
            "x ${input.a}",
            "${input..a}",
            "${charge-payment.output.x}",
            "${}",
            "${a}${b}",
        ] {
            assert!(Expression::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Expression::parse("plain").unwrap(), None);
        let e = Expression::parse("${pay.result}").unwrap().unwrap();
        assert_eq!(e.source, Source::Result("pay".into()));
        assert!(e.path.is_empty());
    }
}
