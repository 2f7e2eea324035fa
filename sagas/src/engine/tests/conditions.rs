//! A step's `when`: it runs only when its condition holds, else it is
//! skipped — never sent, never undone.

use super::versions::order_v1_text;
use super::*;

/// The order saga with a fraud check, only for amounts above 1,000.00, and
/// a gift wrap only when the charge's reply says the customer asked.
fn with_conditions() -> Arc<TypeVersions> {
    let steps = r#"[[steps]]
name = "fraud-check"
participant = "fraud"
command = "order.fraud.check.v1"
event = "FraudChecked"
when = { value = "${input.amount_cents}", above = 100000 }
data = { order_id = "${input.order_id}" }

[[steps]]
name = "gift-wrap"
participant = "order"
command = "order.order.wrap.v1"
when = { value = "${charge-payment.result.gift}", equals = true }

# Confirmation"#;
    let text = order_v1_text().replacen("# Confirmation", steps, 1);
    let definition =
        Definition::from_toml("order-checked.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let mut catalog = Catalog::default();
    catalog.add(definition).unwrap();
    catalog.get("order").unwrap().clone()
}

fn started(amount_cents: i64) -> Harness {
    let mut h = Harness::of(&with_conditions());
    let mut input = order();
    input["amount_cents"] = json!(amount_cents);
    h.start(input, policy());
    h
}

#[test]
fn a_step_whose_condition_fails_is_skipped() {
    let mut h = started(500);
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(
        h.command_steps(),
        ["reserve-inventory", "charge-payment", "confirm-order"]
    );
    assert_eq!(h.state.skipped(), ["fraud-check", "gift-wrap"]);
    let progress = h.state.explain().progress;
    assert_eq!(
        progress["steps_skipped"],
        json!(["fraud-check", "gift-wrap"])
    );
}

#[test]
fn a_step_whose_condition_holds_runs() {
    let mut h = started(250_000);
    h.ok(Step::ReserveInventory);
    h.ok_with(Step::ChargePayment, Some(json!({"gift": true})));
    assert_eq!(h.last_command().step, "fraud-check");
    h.ok("fraud-check");
    assert_eq!(h.last_command().step, "gift-wrap");
    h.ok("gift-wrap");
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
    assert!(h.state.skipped().is_empty());
    assert_eq!(h.rebuilt(&with_conditions()), h.state);
}

#[test]
fn a_failure_after_a_skipped_step_undoes_only_what_ran() {
    let mut h = started(500);
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        h.command_steps(),
        [
            "reserve-inventory",
            "charge-payment",
            "confirm-order",
            "refund-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
}

#[test]
fn a_saga_whose_every_step_is_skipped_completes_at_once() {
    let text = r#"
saga_type = "maybe"
version = 1
[[steps]]
name = "only"
participant = "p"
command = "maybe.only.v1"
when = { value = "${input.wanted}", exists = true }
"#;
    let mut catalog = Catalog::default();
    catalog
        .add(Definition::from_toml("maybe.toml", text).unwrap())
        .unwrap();
    let mut h = Harness::of(catalog.get("maybe").unwrap());
    h.start(json!({}), policy());
    assert_eq!(h.state.status(), Status::Completed);
    assert!(h.commands.is_empty());
    let mut h = Harness::of(catalog.get("maybe").unwrap());
    h.start(json!({"wanted": 1}), policy());
    assert_eq!(h.command_steps(), ["only"]);
}

#[test]
fn a_condition_reading_a_later_step_is_refused_at_load() {
    let text = order_v1_text().replacen(
        "name = \"charge-payment\"",
        "name = \"charge-payment\"\nwhen = { value = \"${confirm-order.result.ok}\", equals = true }",
        1,
    );
    let refused = Definition::from_toml("bad.toml", &text).unwrap_err();
    assert_eq!(refused.problems[0].at, "steps[1].when.value");
    assert!(
        refused.problems[0].message.contains("runs after this step"),
        "{refused}"
    );
}
