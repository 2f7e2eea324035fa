//! A step's `late_reply`: what a success does that arrives after the saga
//! compensated without the step — ignored (the default), or undone.

use super::versions::order_v1_text;
use super::*;

/// The order saga whose charge is undone when its success comes too late.
fn undo_late_charges() -> Arc<TypeVersions> {
    let text = order_v1_text().replacen(
        "event = \"PaymentCharged\"",
        "event = \"PaymentCharged\"\nlate_reply = \"undo\"",
        1,
    );
    let definition = Definition::from_toml("late.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let mut catalog = Catalog::default();
    catalog.add(definition).unwrap();
    catalog.get("order").unwrap().clone()
}

/// Reserved, then the charge failed twice (not timed out: not in doubt),
/// so the saga compensates without a refund.
fn charge_failed(kind: &Arc<TypeVersions>) -> Harness {
    let mut h = Harness::of(kind);
    h.start(order(), policy());
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, failed("busy")).unwrap();
    h.wake_after(2_000);
    h.reply(Step::ChargePayment, 2, failed("busy")).unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    h
}

#[test]
fn a_late_success_after_compensation_runs_the_undo() {
    let kind = undo_late_charges();
    let mut h = charge_failed(&kind);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    let events = h.reply(Step::ChargePayment, 1, Outcome::Succeeded).unwrap();
    assert_eq!(events[0].kind.name(), "LateSuccess");
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(h.last_command().step, "refund-payment");
    h.ok(Step::RefundPayment);
    assert_eq!(h.state.status(), Status::Compensated);
    // The same late success again changes nothing.
    assert_eq!(
        h.reply(Step::ChargePayment, 2, Outcome::Succeeded),
        Err(Rejection::Terminal(Status::Compensated))
    );
    assert_eq!(h.rebuilt(&kind), h.state);
}

#[test]
fn a_late_success_while_compensating_queues_the_undo_after_the_step_in_hand() {
    let kind = undo_late_charges();
    let mut h = charge_failed(&kind);
    assert_eq!(h.last_command().step, "release-inventory");
    h.reply(Step::ChargePayment, 1, Outcome::Succeeded).unwrap();
    assert_eq!(h.last_command().step, "release-inventory");
    h.ok(Step::ReleaseInventory);
    assert_eq!(h.last_command().step, "refund-payment");
    h.ok(Step::RefundPayment);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn a_step_skipped_as_failed_is_undone_when_its_success_comes() {
    let kind = undo_late_charges();
    let mut h = Harness::of(&kind);
    h.start(order(), policy());
    h.ok(Step::ReserveInventory);
    h.act(ActionKind::Skip {
        assume: Assume::Failed,
    })
    .unwrap();
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    h.reply(Step::ChargePayment, 1, Outcome::Succeeded).unwrap();
    assert_eq!(h.last_command().step, "refund-payment");
}

#[test]
fn by_default_a_late_success_is_ignored() {
    let mut h = charge_failed(&order_kind());
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    let sent = h.commands.len();
    assert_eq!(
        h.reply(Step::ChargePayment, 1, Outcome::Succeeded),
        Err(Rejection::Terminal(Status::Compensated))
    );
    assert_eq!(h.commands.len(), sent);
}

#[test]
fn an_undo_already_planned_is_not_planned_twice() {
    // A charge that timed out is in doubt: its refund is planned already.
    let kind = undo_late_charges();
    let mut h = Harness::of(&kind);
    h.start(order(), policy());
    h.ok(Step::ReserveInventory);
    h.wake_after(1_000);
    h.wake_after(2_000);
    h.wake_after(1_000);
    assert_eq!(h.last_command().step, "refund-payment");
    let late = h.reply(Step::ChargePayment, 1, Outcome::Succeeded);
    assert!(
        matches!(late, Err(Rejection::UnexpectedReply { .. })),
        "{late:?}"
    );
}

#[test]
fn undoing_late_successes_needs_an_undo() {
    let text = order_v1_text().replacen(
        "event = \"OrderConfirmed\"",
        "event = \"OrderConfirmed\"\nlate_reply = \"undo\"",
        1,
    );
    let refused = Definition::from_toml("bad.toml", &text).unwrap_err();
    assert_eq!(refused.problems[0].at, "steps[2].late_reply");
}

#[test]
fn the_undo_of_a_late_success_reads_its_result() {
    let kind = undo_late_charges();
    let mut h = charge_failed(&kind);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    h.reply_with(
        Step::ChargePayment,
        1,
        Outcome::Succeeded,
        Some(json!({"charge_id": "ch-late"})),
    )
    .unwrap();
    let refund = h.last_command();
    assert_eq!(refund.step, "refund-payment");
    assert_eq!(refund.data["charge_id"], "ch-late");
    assert_eq!(h.rebuilt(&kind), h.state);
}

#[test]
fn a_success_of_a_step_that_was_never_sent_is_not_undone() {
    let kind = undo_late_charges();
    let mut h = Harness::of(&kind);
    h.start(order(), policy());
    h.reply(Step::ReserveInventory, 1, refused("out of stock"))
        .unwrap();
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        h.reply(Step::ChargePayment, 1, Outcome::Succeeded),
        Err(Rejection::Terminal(Status::Compensated))
    );
    assert!(!h.command_steps().contains(&"refund-payment"));
}
