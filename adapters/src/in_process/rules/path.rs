//! Paths into a command's data: `customer_id`, `items[*].sku`, `items[0].sku`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    /// `[*]`: any element of an array.
    Each,
    /// `[n]`: one element of an array.
    Index(usize),
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// Parses `path`; the error says what is wrong with it.
    pub(super) fn parse(path: &str) -> Result<Self, &'static str> {
        let mut segments = Vec::new();
        for (i, part) in path.split('.').enumerate() {
            let (name, mut brackets) = part.split_at(part.find('[').unwrap_or(part.len()));
            if name.contains(']') {
                return Err("a `]` has no `[`");
            }
            // Only a path's start may be an element, as in `[*].sku`.
            if name.is_empty() && (i > 0 || brackets.is_empty()) {
                return Err("a name is empty");
            }
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_owned()));
            }
            while !brackets.is_empty() {
                let opened = brackets
                    .strip_prefix('[')
                    .ok_or("a `]` is followed by neither `.` nor `[`")?;
                let (inside, rest) = opened.split_once(']').ok_or("a `[` has no `]`")?;
                segments.push(match inside {
                    "*" => Segment::Each,
                    n => Segment::Index(n.parse().map_err(|_| "`[…]` holds `*` or an index")?),
                });
                brackets = rest;
            }
        }
        Ok(Self(segments))
    }

    /// The first value at this path in `data` that passes `test`.
    pub(super) fn find<'a>(
        &self,
        data: &'a Value,
        test: &impl Fn(&Value) -> bool,
    ) -> Option<&'a Value> {
        find(&self.0, data, test)
    }
}

fn find<'a>(
    segments: &[Segment],
    value: &'a Value,
    test: &impl Fn(&Value) -> bool,
) -> Option<&'a Value> {
    let Some((first, rest)) = segments.split_first() else {
        return test(value).then_some(value);
    };
    match first {
        Segment::Key(key) => find(rest, value.as_object()?.get(key)?, test),
        Segment::Index(i) => find(rest, value.as_array()?.get(*i)?, test),
        Segment::Each => value.as_array()?.iter().find_map(|v| find(rest, v, test)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;

    /// Every value at `path` in `data`, in order.
    fn reached(path: &str, data: &Value) -> Vec<Value> {
        let seen = RefCell::new(Vec::new());
        let path = FieldPath::parse(path).unwrap();
        path.find(data, &|v| {
            seen.borrow_mut().push(v.clone());
            false
        });
        seen.into_inner()
    }

    #[test]
    fn paths_reach_keys_elements_and_any_element() {
        let data = json!({
            "customer_id": "c-1",
            "items": [{ "sku": "A" }, { "qty": 1 }, { "sku": "B" }],
            "nested": { "deep": { "x": 2 } },
            "matrix": [[1, 2], [3]]
        });
        assert_eq!(reached("customer_id", &data), [json!("c-1")]);
        assert_eq!(reached("items[*].sku", &data), [json!("A"), json!("B")]);
        assert_eq!(reached("items[2].sku", &data), [json!("B")]);
        assert_eq!(reached("items[7].sku", &data), Vec::<Value>::new());
        assert_eq!(reached("nested.deep.x", &data), [json!(2)]);
        assert_eq!(
            reached("matrix[*][*]", &data),
            [json!(1), json!(2), json!(3)]
        );
        assert_eq!(reached("missing.x", &data), Vec::<Value>::new());
        assert_eq!(reached("customer_id[*]", &data), Vec::<Value>::new());
        assert_eq!(reached("[*].sku", &json!([{ "sku": "C" }])), [json!("C")]);
    }

    #[test]
    fn the_first_value_that_passes_is_found() {
        let data = json!({ "items": [{ "sku": "A-1" }, { "sku": "B-1" }, { "sku": "B-2" }] });
        let path = FieldPath::parse("items[*].sku").unwrap();
        let b = path.find(&data, &|v| v.as_str().is_some_and(|s| s.starts_with("B-")));
        assert_eq!(b, Some(&json!("B-1")));
        assert_eq!(path.find(&data, &|v| v.is_number()), None);
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in ["", ".a", "a.", "a..b", "a[", "a[x]", "a]", "a.[*]", "a[*]b"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} parses");
        }
        for good in ["a", "a.b", "a[*]", "a[0].b", "a[*][*]", "[*].a", "[*]"] {
            assert!(FieldPath::parse(good).is_ok(), "{good:?} does not parse");
        }
    }
}
