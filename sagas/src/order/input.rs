//! The order a client starts a saga with.

use serde::{Deserialize, Serialize};

use super::currency::is_iso_4217;
use crate::FieldError;

/// Limits that keep one order within what participants accept.
const MAX_ITEMS: usize = 1_000;
const MAX_ID_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<LineItem>,
    pub amount_cents: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    pub sku: String,
    pub qty: i64,
}

impl OrderInput {
    /// Every problem with the order, each naming its field (`input.items[2].qty`).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_id(&mut errors, "input.order_id", &self.order_id);
        check_id(&mut errors, "input.customer_id", &self.customer_id);
        if self.items.is_empty() {
            errors.push(FieldError::new(
                "input.items",
                "must hold at least one item",
            ));
        }
        if self.items.len() > MAX_ITEMS {
            errors.push(FieldError::new(
                "input.items",
                format!("must hold at most {MAX_ITEMS} items"),
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            check_id(&mut errors, &format!("input.items[{i}].sku"), &item.sku);
            if item.qty < 1 {
                errors.push(FieldError::new(
                    format!("input.items[{i}].qty"),
                    format!("must be at least 1, got {}", item.qty),
                ));
            }
        }
        if self.amount_cents <= 0 {
            errors.push(FieldError::new(
                "input.amount_cents",
                format!("must be greater than 0, got {}", self.amount_cents),
            ));
        }
        if !is_iso_4217(&self.currency) {
            errors.push(FieldError::new(
                "input.currency",
                format!(
                    "must be an ISO 4217 currency code such as EUR, got {:?}",
                    self.currency
                ),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn check_id(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if value.len() > MAX_ID_LEN {
        errors.push(FieldError::new(
            field,
            format!("must be at most {MAX_ID_LEN} bytes"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderInput {
        OrderInput {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![LineItem {
                sku: "SKU-1".into(),
                qty: 2,
            }],
            amount_cents: 1999,
            currency: "EUR".into(),
        }
    }

    fn fields(result: Result<(), Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_well_formed_order_is_valid() {
        assert_eq!(order().validate(), Ok(()));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let mut o = order();
        o.items.clear();
        assert_eq!(fields(o.validate()), ["input.items"]);

        let mut o = order();
        o.items.push(LineItem {
            sku: "X".into(),
            qty: 0,
        });
        assert_eq!(fields(o.validate()), ["input.items[1].qty"]);

        let mut o = order();
        o.amount_cents = -5;
        assert_eq!(fields(o.validate()), ["input.amount_cents"]);

        let mut o = order();
        o.currency = "EURO".into();
        assert_eq!(fields(o.validate()), ["input.currency"]);

        let mut o = order();
        o.currency = "eur".into();
        assert_eq!(fields(o.validate()), ["input.currency"]);

        let mut o = order();
        o.order_id = " ".into();
        o.customer_id = String::new();
        assert_eq!(
            fields(o.validate()),
            ["input.order_id", "input.customer_id"]
        );
    }
}
