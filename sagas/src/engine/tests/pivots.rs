//! A pivot in the middle of a saga, with steps after it: before it succeeds
//! the saga compensates as any other; after it, it retries, then suspends.

use super::*;

const SHIPMENT: &str = r#"
saga_type = "shipment"
version = 1

[[steps]]
name = "reserve"
participant = "warehouse"
command = "shipment.reserve.v1"
event = "Reserved"
undo = { name = "unreserve", command = "shipment.unreserve.v1", event = "Unreserved" }

[[steps]]
name = "pay"
participant = "payment"
command = "shipment.pay.v1"
event = "Paid"
pivot = true
undo = { name = "void", command = "shipment.void.v1", event = "Voided" }

[[steps]]
name = "pack"
participant = "warehouse"
command = "shipment.pack.v1"
event = "Packed"

[[steps]]
name = "ship"
participant = "carrier"
command = "shipment.ship.v1"
event = "Shipped"

[final_compensation]
name = "notify"
participant = "mail"
command = "shipment.notify.v1"
event = "Notified"
"#;

fn started_with(policy: Policy) -> Harness {
    let mut catalog = Catalog::default();
    catalog
        .add(Definition::from_toml("shipment.v1.toml", SHIPMENT).unwrap_or_else(|e| panic!("{e}")))
        .unwrap();
    let mut h = Harness::of(catalog.get("shipment").unwrap());
    h.start(json!({}), policy);
    h
}

/// Paid, and packing failed past its budget of 2.
fn suspended_packing() -> Harness {
    let mut h = started_with(policy());
    h.ok("reserve");
    h.ok("pay");
    h.reply("pack", 1, failed("belt stopped")).unwrap();
    h.wake_after(2_000);
    h.reply("pack", 2, failed("belt stopped")).unwrap();
    assert_eq!(then_of(h.history.last().unwrap()), Some(&Then::Suspend));
    assert_eq!(h.state.status(), Status::Suspended);
    h
}

fn plan_of(h: &Harness) -> Option<&Vec<String>> {
    h.history.iter().find_map(|e| match then_of(e) {
        Some(Then::Compensate { plan }) => Some(plan),
        _ => None,
    })
}

#[test]
fn a_pivot_that_fails_compensates_like_any_step() {
    let mut h = started_with(policy());
    h.ok("reserve");
    h.reply("pay", 1, refused("declined")).unwrap();
    assert_eq!(plan_of(&h).unwrap(), &["unreserve", "notify"]);

    let mut p = policy();
    p.forward.max_attempts = 1;
    let mut h = started_with(p);
    h.ok("reserve");
    h.wake_after(1_000);
    assert_eq!(
        plan_of(&h).unwrap(),
        &["void", "unreserve", "notify"],
        "a payment in doubt is voided"
    );
}

#[test]
fn compensating_now_before_the_pivot_undoes_the_pivot_in_flight() {
    let mut h = started_with(policy());
    h.ok("reserve");
    assert!(h.state.allowed_actions().contains(&"compensate"));
    h.act(ActionKind::Compensate).unwrap();
    assert_eq!(plan_of(&h).unwrap(), &["void", "unreserve", "notify"]);
    for step in ["void", "unreserve", "notify"] {
        h.ok(step);
    }
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        h.command_steps(),
        ["reserve", "pay", "void", "unreserve", "notify"]
    );
}

#[test]
fn past_the_pivot_every_later_step_is_retried_then_suspended() {
    let mut h = suspended_packing();
    assert_eq!(plan_of(&h), None);
    h.act(ActionKind::Resume).unwrap();
    assert_eq!(h.state.status(), Status::Running);
    assert_eq!(h.last_command().attempt, 3);
    h.ok("pack");
    h.reply("ship", 1, refused("no such address")).unwrap();
    assert_eq!(
        h.state.status(),
        Status::Suspended,
        "a refusal past the pivot waits for a person"
    );
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(plan_of(&h), None);
    assert!(h.state.undone().is_empty());
}

#[test]
fn a_suspended_step_past_the_pivot_that_succeeds_late_runs_on() {
    let mut h = suspended_packing();
    h.reply("pack", 2, Outcome::Succeeded).unwrap();
    assert_eq!(h.last_command().step, "ship", "the next step is sent");
    assert_eq!(h.state.status(), Status::Running);
    assert_eq!(h.state.allowed_actions(), ["retry", "skip", "cancel"]);
}

#[test]
fn skipping_a_suspended_step_past_the_pivot_as_succeeded_runs_on() {
    let mut h = suspended_packing();
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.last_command().step, "ship");
    assert_eq!(h.state.status(), Status::Running);
    assert!(h
        .state
        .explain()
        .waiting
        .is_some_and(|w| w.on != WaitingOn::Operator));
}
