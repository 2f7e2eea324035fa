//! The saga's course without operators: forward, retries, compensation, suspension.

use super::*;

#[test]
fn happy_path_runs_the_three_steps_and_completes() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(
        h.event_names(),
        [
            "SagaStarted",
            "InventoryReserved",
            "PaymentCharged",
            "OrderConfirmed"
        ]
    );
    assert_eq!(
        h.command_steps(),
        ["reserve-inventory", "charge-payment", "confirm-order"]
    );
    for c in &h.commands {
        assert_eq!(c.idempotency_key, format!("{}:{}", h.state.id(), c.step));
    }
    assert_eq!(h.state.view().step, None);
}

#[test]
fn refused_reservation_cancels_the_order_without_payment() {
    let mut h = Harness::started();
    h.reply(Step::ReserveInventory, 1, refused("out of stock"))
        .unwrap();
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(h.command_steps(), ["reserve-inventory", "cancel-order"]);
    assert_eq!(
        h.event_names(),
        ["SagaStarted", "StepFailed", "OrderCancelled"]
    );
}

#[test]
fn declined_payment_releases_inventory_then_cancels() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, refused("card declined"))
        .unwrap();
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        h.command_steps(),
        [
            "reserve-inventory",
            "charge-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
    assert_eq!(
        h.state.view().last_error.as_deref(),
        Some("charge-payment: card declined")
    );
}

#[test]
fn failed_confirmation_refunds_releases_and_cancels_in_that_order() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        &h.command_steps()[3..],
        ["refund-payment", "release-inventory", "cancel-order"]
    );
    assert_eq!(
        h.state.undone(),
        names(&[
            Step::RefundPayment,
            Step::ReleaseInventory,
            Step::CancelOrder
        ])
    );
}

#[test]
fn transient_failure_is_retried_after_backoff_with_the_same_key() {
    let mut h = Harness::started();
    let events = h
        .reply(Step::ReserveInventory, 1, failed("db busy"))
        .unwrap();
    let Then::Retry { at } = (match &events[0].kind {
        EventKind::StepFailed { then, .. } => then.clone(),
        other => panic!("{other:?}"),
    }) else {
        panic!("expected a retry")
    };
    assert!(at > h.now && at <= h.now + Duration::milliseconds(100));
    assert_eq!(h.state.view().wake_at, Some(at));
    assert!(
        h.wake_after(1).is_empty(),
        "nothing is due before the back-off"
    );
    h.wake_after(200);
    assert_eq!(h.commands.len(), 2);
    assert_eq!(h.commands[1].attempt, 2);
    let key = format!("{}:reserve-inventory", h.state.id());
    assert_eq!(h.commands[0].idempotency_key, key);
    assert_eq!(h.commands[1].idempotency_key, key);
    h.ok(Step::ReserveInventory);
    assert_eq!(h.state.pending().unwrap().step, Step::ChargePayment.name());
}

#[test]
fn payment_timeout_past_its_budget_refunds_then_releases_then_cancels() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    assert!(h.wake_after(500).is_empty(), "deadline not reached");
    h.wake_after(600); // attempt 1 times out
    h.wake_after(2_000); // back-off over: attempt 2
    h.wake_after(1_100); // attempt 2 times out: budget of 2 spent
    assert_eq!(h.state.status(), Status::Compensating);
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(
        h.command_steps(),
        [
            "reserve-inventory",
            "charge-payment",
            "charge-payment",
            "refund-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn reservation_timeout_releases_what_may_have_been_reserved() {
    let mut policy = policy();
    policy.forward.max_attempts = 1;
    let mut h = Harness::new();
    h.start(order(), policy);
    h.wake_after(1_000);
    assert_eq!(
        h.command_steps(),
        ["reserve-inventory", "release-inventory"]
    );
}

#[test]
fn a_charge_that_timed_out_and_then_was_declined_is_still_refunded() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.wake_after(1_000); // attempt 1 times out: it may have been applied
    h.wake_after(2_000); // attempt 2 goes out
    h.reply(Step::ChargePayment, 2, refused("card declined"))
        .unwrap();
    assert_eq!(
        then_of(h.history.last().unwrap()),
        Some(&compensate(&[
            Step::RefundPayment,
            Step::ReleaseInventory,
            Step::CancelOrder
        ]))
    );
}

#[test]
fn compensation_out_of_budget_suspends_and_a_late_success_resumes() {
    let mut h = suspended();
    assert_eq!(h.state.status(), Status::Suspended);
    let view = h.state.view();
    assert_eq!(view.step.as_deref(), Some("release-inventory"));
    assert_eq!(
        view.wake_at, None,
        "a suspended saga waits for a person, not a timer"
    );
    assert!(h.wake_after(60_000).is_empty());
    let sent = h.commands.len();
    h.reply(Step::ReleaseInventory, 3, Outcome::Succeeded)
        .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(h.commands.len(), sent + 1);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn events_round_trip_through_json() {
    let mut compensated = Harness::started();
    compensated
        .reply(Step::ReserveInventory, 1, failed("x"))
        .unwrap();
    compensated.wake_after(200);
    compensated.ok(Step::ReserveInventory);
    compensated.ok(Step::ChargePayment);
    compensated
        .reply(Step::ConfirmOrder, 1, refused("no"))
        .unwrap();
    compensated.ok(Step::RefundPayment);
    compensated.ok(Step::ReleaseInventory);
    compensated.ok(Step::CancelOrder);
    let mut completed = Harness::started();
    completed.ok(Step::ReserveInventory);
    completed.ok(Step::ChargePayment);
    completed.ok(Step::ConfirmOrder);
    let mut cancelled = Harness::started();
    cancelled.act(ActionKind::Cancel).unwrap();

    let history = [compensated.history, completed.history, cancelled.history].concat();
    let mut kinds: Vec<&str> = history.iter().map(|e| e.kind.name()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), 11, "every kind of event: {kinds:?}");
    for e in &history {
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["type"], e.kind.name());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(&back, e);
    }
}
