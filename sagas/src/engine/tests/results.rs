//! What a step's reply returned, read by later commands: the refund carries
//! the charge's id. And every command is the one the old order saga sent.

use super::*;

fn charge_id_of(command: &Command) -> &Value {
    assert_eq!(command.step, Step::RefundPayment.name());
    let data = command
        .data
        .as_object()
        .expect("the refund's data is an object");
    data.get("charge_id")
        .expect("the refund always names its charge_id, if only as null")
}

#[test]
fn the_refund_carries_the_charge_id_the_charges_reply_returned() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.ok_with(Step::ChargePayment, Some(json!({"charge_id": "ch-1"})));
    assert_eq!(
        h.state.result("charge-payment"),
        Some(json!({"charge_id": "ch-1"}))
    );
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    let refund = h.last_command();
    assert_eq!(
        refund.data,
        json!({
            "order_id": "o-1",
            "customer_id": "c-1",
            "amount_cents": 500,
            "currency": "EUR",
            "charge_id": "ch-1"
        })
    );
}

#[test]
fn the_refund_of_a_charge_never_answered_carries_a_null_charge_id() {
    let mut p = policy();
    p.forward.max_attempts = 1;
    let mut h = Harness::new();
    h.start(order(), p);
    h.ok(Step::ReserveInventory);
    h.wake_after(1_000); // the charge times out: it may have been applied
    assert_eq!(
        &h.command_steps()[2..],
        ["refund-payment"],
        "a charge in doubt is refunded"
    );
    assert_eq!(charge_id_of(h.last_command()), &Value::Null);
    assert_eq!(h.state.result("charge-payment"), None);
}

#[test]
fn a_charge_skipped_by_an_operator_is_refunded_with_a_null_charge_id() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    assert_eq!(charge_id_of(h.last_command()), &Value::Null);
}

#[test]
fn a_late_success_of_an_earlier_attempt_keeps_what_it_returned() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, failed("gateway busy"))
        .unwrap();
    h.wake_after(200); // attempt 2 goes out
    assert_eq!(h.last_command().attempt, 2);
    h.reply_with(
        Step::ChargePayment,
        1,
        Outcome::Succeeded,
        Some(json!({"charge_id": "ch-early"})),
    )
    .unwrap();
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    assert_eq!(charge_id_of(h.last_command()), &json!("ch-early"));
}

#[test]
fn the_charge_id_is_kept_in_the_charges_event_and_survives_a_rebuild() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.ok_with(Step::ChargePayment, Some(json!({"charge_id": "ch-1"})));
    let stored = serde_json::to_value(h.history.last().unwrap()).unwrap();
    assert_eq!(stored["type"], "PaymentCharged");
    assert_eq!(stored["step"], "charge-payment");
    assert_eq!(stored["result"], json!({"charge_id": "ch-1"}));
    let rebuilt = h.rebuilt(&order_kind());
    assert_eq!(rebuilt, h.state);
    // Given the rebuilt state, when the confirmation is refused, then the refund
    // still names the charge.
    let events = rebuilt
        .decide(Input::Reply(Reply {
            step: Step::ConfirmOrder.name().into(),
            attempt: 1,
            outcome: refused("no"),
            at: h.now,
            result: None,
        }))
        .unwrap();
    let rebuilt = rebuilt.evolve(&events[0]);
    let commands = rebuilt.commands(&events[0]);
    assert_eq!(commands.len(), 1);
    assert_eq!(charge_id_of(&commands[0]), &json!("ch-1"));
}

/// (step, command type, participant, data) as the old saga's `Step::command`
/// built them; the refund now names its charge too.
fn old_commands() -> Vec<(Step, &'static str, &'static str, Value)> {
    let items = json!([{"sku": "SKU-1", "qty": 1}]);
    let payment = json!({
        "order_id": "o-1", "customer_id": "c-1", "amount_cents": 500, "currency": "EUR"
    });
    let mut refund = payment.clone();
    refund["charge_id"] = json!("ch-1");
    let order = json!({"order_id": "o-1", "customer_id": "c-1"});
    vec![
        (
            Step::ReserveInventory,
            "order.inventory.reserve.v1",
            "inventory",
            json!({"order_id": "o-1", "items": items}),
        ),
        (
            Step::ChargePayment,
            "order.payment.charge.v1",
            "payment",
            payment,
        ),
        (
            Step::ConfirmOrder,
            "order.order.confirm.v1",
            "order",
            order.clone(),
        ),
        (
            Step::RefundPayment,
            "order.payment.refund.v1",
            "payment",
            refund,
        ),
        (
            Step::ReleaseInventory,
            "order.inventory.release.v1",
            "inventory",
            json!({"order_id": "o-1", "items": items}),
        ),
        (Step::CancelOrder, "order.order.cancel.v1", "order", order),
    ]
}

#[test]
fn every_command_is_the_one_the_old_order_saga_sent() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.ok_with(Step::ChargePayment, Some(json!({"charge_id": "ch-1"})));
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    let expected = old_commands();
    assert_eq!(h.commands.len(), expected.len());
    for (c, (step, command_type, participant, data)) in h.commands.iter().zip(expected) {
        assert_eq!(c.step, step.name());
        assert_eq!(c.command_type, command_type, "{step:?}");
        assert_eq!(c.participant, participant, "{step:?}");
        assert_eq!(c.attempt, 1);
        assert_eq!(
            c.idempotency_key,
            format!("{}:{}", h.state.id(), step.name())
        );
        assert_eq!(c.data, data, "{step:?}");
    }
}

#[test]
fn a_null_result_reads_back_as_it_was_decided() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.ok_with(Step::ChargePayment, Some(Value::Null));
    let stored: Event =
        serde_json::from_value(serde_json::to_value(h.history.last().unwrap()).unwrap()).unwrap();
    assert_eq!(&stored, h.history.last().unwrap());
    assert_eq!(h.rebuilt(&order_kind()), h.state);
}
