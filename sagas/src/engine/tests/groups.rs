//! Parallel groups: steps sent together and awaited together; on a failure
//! of one, the members that succeeded are undone, and those still in flight
//! are awaited (or time out) before their undo runs.

use super::versions::order_v1_text;
use super::*;

/// The order saga with inventory and payment in one parallel group.
fn grouped() -> Arc<TypeVersions> {
    let text = order_v1_text()
        .replacen(
            "name = \"reserve-inventory\"",
            "name = \"reserve-inventory\"\ngroup = \"prepare\"",
            1,
        )
        .replacen(
            "name = \"charge-payment\"",
            "name = \"charge-payment\"\ngroup = \"prepare\"",
            1,
        );
    let definition = Definition::from_toml("grouped.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let mut catalog = Catalog::default();
    catalog.add(definition).unwrap();
    catalog.get("order").unwrap().clone()
}

fn started() -> Harness {
    let mut h = Harness::of(&grouped());
    h.start(order(), policy());
    h
}

fn in_hand(h: &Harness) -> Vec<&str> {
    h.state.in_hand().iter().map(|p| p.step.as_str()).collect()
}

#[test]
fn a_group_is_sent_together_and_awaited_together() {
    let mut h = started();
    assert_eq!(h.command_steps(), ["reserve-inventory", "charge-payment"]);
    assert_eq!(in_hand(&h), ["reserve-inventory", "charge-payment"]);
    h.ok(Step::ChargePayment);
    // Nothing more goes out until the whole group answered.
    assert_eq!(h.commands.len(), 2);
    h.ok(Step::ReserveInventory);
    assert_eq!(h.last_command().step, "confirm-order");
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(
        h.state.done(),
        ["charge-payment", "reserve-inventory", "confirm-order"]
    );
    assert_eq!(h.rebuilt(&grouped()), h.state);
}

#[test]
fn a_refusal_undoes_the_member_that_succeeded() {
    let mut h = started();
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        &h.command_steps()[2..],
        ["release-inventory", "cancel-order"]
    );
}

#[test]
fn a_member_still_in_flight_is_awaited_then_undone_when_it_succeeds() {
    let mut h = started();
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    // The reservation is still out: its undo must not overtake it.
    assert_eq!(h.commands.len(), 2);
    assert_eq!(in_hand(&h), ["reserve-inventory"]);
    h.ok(Step::ReserveInventory);
    assert_eq!(h.last_command().step, "release-inventory");
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(h.rebuilt(&grouped()), h.state);
}

#[test]
fn a_member_in_flight_that_fails_is_not_undone() {
    let mut h = started();
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    h.reply(Step::ReserveInventory, 1, refused("out of stock"))
        .unwrap();
    assert_eq!(h.last_command().step, "cancel-order");
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert!(!h.command_steps().contains(&"release-inventory"));
}

#[test]
fn a_member_in_flight_that_times_out_is_undone() {
    let mut h = started();
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    let events = h.wake_after(1_000);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(h.last_command().step, "release-inventory");
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn both_members_timing_out_together_retry_each_then_compensate_once() {
    let mut h = started();
    // Attempt 1 of both times out in one wake: both are retried.
    let events = h.wake_after(1_000);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| matches!(
        &e.kind,
        EventKind::StepFailed {
            then: Then::Retry { .. },
            ..
        }
    )));
    h.wake_after(1_000);
    assert_eq!(
        &h.command_steps()[2..],
        ["reserve-inventory", "charge-payment"]
    );
    // Attempt 2 (the last) of both times out: the first to be decided
    // compensates, planning both undos; the other is then awaited no more.
    let events = h.wake_after(1_000);
    let plans: Vec<&Then> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFailed { then, .. } => Some(then),
            _ => None,
        })
        .collect();
    assert_eq!(
        plans[0],
        &compensate(&[
            Step::RefundPayment,
            Step::ReleaseInventory,
            Step::CancelOrder
        ])
    );
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(h.last_command().step, "refund-payment");
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(h.rebuilt(&grouped()), h.state);
}

#[test]
fn a_group_cannot_hold_a_pivot_and_its_steps_follow_one_another() {
    let text = order_v1_text()
        .replacen(
            "name = \"reserve-inventory\"",
            "name = \"reserve-inventory\"\ngroup = \"a\"\npivot = true",
            1,
        )
        .replacen(
            "name = \"confirm-order\"",
            "name = \"confirm-order\"\ngroup = \"a\"",
            1,
        );
    let refused = Definition::from_toml("bad.toml", &text).unwrap_err();
    let places: Vec<&str> = refused.problems.iter().map(|p| p.at.as_str()).collect();
    assert!(places.contains(&"steps[0].pivot"), "{refused}");
    assert!(places.contains(&"steps[2].group"), "{refused}");
}

#[test]
fn a_member_may_not_read_a_result_of_its_own_group() {
    let text = order_v1_text()
        .replacen(
            "name = \"reserve-inventory\"",
            "name = \"reserve-inventory\"\ngroup = \"prepare\"",
            1,
        )
        .replacen(
            "name = \"charge-payment\"",
            "name = \"charge-payment\"\ngroup = \"prepare\"",
            1,
        )
        .replacen(
            "customer_id = \"${input.customer_id}\"\namount_cents",
            "customer_id = \"${reserve-inventory.result.hold}\"\namount_cents",
            1,
        );
    let refused = Definition::from_toml("bad.toml", &text).unwrap_err();
    assert_eq!(refused.problems[0].at, "steps[1].data.customer_id");
    assert!(
        refused.problems[0].message.contains("runs after this step"),
        "{refused}"
    );
}

#[test]
fn an_awaited_member_skipped_as_failed_keeps_the_rest_of_the_plan() {
    let mut h = Harness::of(&grouped());
    let mut slow_inventory = policy();
    slow_inventory
        .step_timeouts_ms
        .insert("reserve-inventory".into(), 10_000);
    h.start(order(), slow_inventory);
    // The charge's first attempt times out (in doubt), its second is refused:
    // its refund is planned, and the reservation still out is awaited.
    h.wake_after(1_000);
    h.wake_after(2_000);
    h.reply(Step::ChargePayment, 2, refused("declined"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(in_hand(&h), ["reserve-inventory"]);
    // An operator declares the reservation not applied: its release leaves
    // the plan, the refund stays.
    h.act(ActionKind::Skip {
        assume: Assume::Failed,
    })
    .unwrap();
    assert_eq!(h.last_command().step, "refund-payment");
    h.ok(Step::RefundPayment);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert!(!h.command_steps().contains(&"release-inventory"));
    assert_eq!(h.rebuilt(&grouped()), h.state);
}

#[test]
fn while_members_are_awaited_they_are_not_sent_again() {
    let mut h = started();
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    assert_eq!(in_hand(&h), ["reserve-inventory"]);
    assert_eq!(h.state.allowed_actions(), ["skip", "cancel"]);
    assert!(matches!(
        h.act(ActionKind::Retry),
        Err(Rejection::NotAllowed {
            action: "retry",
            ..
        })
    ));
}

#[test]
fn past_a_pivot_a_suspended_member_keeps_the_saga_suspended_while_another_retries() {
    let text = order_v1_text()
        .replacen(
            "name = \"reserve-inventory\"",
            "name = \"reserve-inventory\"\npivot = true",
            1,
        )
        .replacen(
            "name = \"charge-payment\"",
            "name = \"charge-payment\"\ngroup = \"finish\"",
            1,
        )
        .replacen(
            "name = \"confirm-order\"",
            "name = \"confirm-order\"\ngroup = \"finish\"",
            1,
        );
    let definition = Definition::from_toml("pivot-group.toml", &text).unwrap();
    let mut catalog = Catalog::default();
    catalog.add(definition).unwrap();
    let kind = catalog.get("order").unwrap().clone();
    let mut h = Harness::of(&kind);
    h.start(order(), policy());
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Suspended);
    h.reply(Step::ConfirmOrder, 1, failed("busy")).unwrap();
    h.wake_after(1_000);
    assert_eq!(h.last_command().step, "confirm-order");
    assert_eq!(h.state.status(), Status::Suspended);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Suspended);
    h.act(ActionKind::Resume).unwrap();
    assert_eq!(h.state.status(), Status::Running);
    h.ok(Step::ChargePayment);
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(h.rebuilt(&kind), h.state);
}
