//! Inputs a saga refuses, and how.

use super::*;

#[test]
fn start_is_refused_when_the_order_is_invalid_or_already_started() {
    let mut bad = order();
    bad["items"] = json!([]);
    let rejection = DefinedSaga::new(&order_kind(), SagaId::from_uuid(Uuid::nil()))
        .decide(Input::Start {
            start: bad,
            version: None,
            policy: policy(),
            now: t0(),
        })
        .unwrap_err();
    assert!(matches!(rejection, Rejection::Invalid(ref e) if e[0].field == "input.items"));

    let mut h = Harness::started();
    let again = h.when(Input::Start {
        start: order(),
        version: None,
        policy: policy(),
        now: t0(),
    });
    assert_eq!(again, Err(Rejection::AlreadyStarted));
}

#[test]
fn inputs_before_start_are_refused() {
    let saga = DefinedSaga::new(&order_kind(), SagaId::from_uuid(Uuid::nil()));
    assert_eq!(saga.allowed_actions(), Vec::<&str>::new());
    for input in every_input(t0()) {
        if matches!(input, Input::Start { .. }) {
            continue;
        }
        assert_eq!(
            saga.decide(input.clone()),
            Err(Rejection::NotStarted),
            "{input:?}"
        );
    }
}

#[test]
fn duplicate_late_and_foreign_replies_change_nothing() {
    let mut h = Harness::started();
    let refuse = |h: &mut Harness, step: &str, attempt: u32, outcome: Outcome| {
        h.now += Duration::milliseconds(10);
        let reply = Reply {
            step: step.into(),
            attempt,
            outcome,
            at: h.now,
            result: None,
        };
        let expected = Rejection::UnexpectedReply {
            step: step.into(),
            attempt,
        };
        assert_eq!(
            h.when(Input::Reply(reply.clone())),
            Err(expected),
            "{reply:?}"
        );
    };
    h.reply(Step::ReserveInventory, 1, failed("db busy"))
        .unwrap();
    refuse(&mut h, "reserve-inventory", 1, failed("duplicate"));
    h.wake_after(200); // attempt 2 is sent
    refuse(&mut h, "reserve-inventory", 1, refused("late"));
    h.ok(Step::ReserveInventory);
    refuse(&mut h, "reserve-inventory", 2, Outcome::Succeeded);
    refuse(&mut h, "confirm-order", 1, Outcome::Succeeded);
    refuse(&mut h, "charge-payment", 2, Outcome::Succeeded); // never sent
    refuse(&mut h, "charge-payment", 0, Outcome::Succeeded);
    refuse(&mut h, "ship-parcel", 1, Outcome::Succeeded);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    // The saga went on as if the refused replies had never come.
    assert_eq!(
        h.event_names(),
        [
            "SagaStarted",
            "StepFailed",
            "StepRetried",
            "InventoryReserved",
            "PaymentCharged",
            "OrderConfirmed"
        ]
    );
    assert_eq!(
        h.command_steps(),
        [
            "reserve-inventory",
            "reserve-inventory",
            "charge-payment",
            "confirm-order"
        ]
    );
}

#[test]
fn a_terminal_saga_refuses_every_input() {
    let mut completed = Harness::started();
    completed.ok(Step::ReserveInventory);
    completed.ok(Step::ChargePayment);
    completed.ok(Step::ConfirmOrder);
    let mut compensated = Harness::started();
    compensated
        .reply(Step::ReserveInventory, 1, refused("out of stock"))
        .unwrap();
    compensated.ok(Step::CancelOrder);
    let mut cancelled = Harness::started();
    cancelled.ok(Step::ReserveInventory);
    cancelled.act(ActionKind::Cancel).unwrap();

    for (h, status) in [
        (completed, Status::Completed),
        (compensated, Status::Compensated),
        (cancelled, Status::Cancelled),
    ] {
        assert_eq!(h.state.status(), status);
        assert_eq!(h.state.allowed_actions(), Vec::<&str>::new());
        // Long after every deadline the saga ever had.
        for input in every_input(h.now + Duration::hours(1)) {
            assert_eq!(
                h.state.decide(input.clone()),
                Err(terminal_refusal(status, &input)),
                "{status}: {input:?}"
            );
        }
    }
}

#[test]
fn actions_that_make_no_sense_are_refused_with_what_is_allowed() {
    let mut h = Harness::started();
    assert_eq!(
        h.act(ActionKind::Resume),
        Err(Rejection::NotAllowed {
            action: "resume",
            status: Status::Running,
            allowed: vec!["retry", "skip", "compensate", "cancel"],
        })
    );
    h.reply(Step::ReserveInventory, 1, refused("no stock"))
        .unwrap();
    assert!(matches!(
        h.act(ActionKind::Compensate),
        Err(Rejection::NotAllowed {
            status: Status::Compensating,
            ..
        })
    ));
    h.ok(Step::CancelOrder);
    let refused = h.act(ActionKind::Cancel).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "`cancel` is not allowed while the saga is compensated; allowed now: none"
    );
}

#[test]
fn an_intervention_needs_an_operator_and_a_reason() {
    let h = Harness::started();
    let rejection = h
        .state
        .decide(Input::Operator {
            action: Action {
                kind: ActionKind::Cancel,
                operator: " ".into(),
                reason: String::new(),
            },
            now: t0(),
        })
        .unwrap_err();
    let Rejection::Invalid(errors) = rejection else {
        panic!()
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["operator", "reason"]);
}

/// The fields a start with `input` is refused on, each named once.
fn invalid_fields(input: Value) -> Vec<String> {
    let saga = DefinedSaga::new(&order_kind(), SagaId::from_uuid(Uuid::nil()));
    let start = Input::Start {
        start: input.clone(),
        version: None,
        policy: policy(),
        now: t0(),
    };
    match saga.decide(start) {
        Err(Rejection::Invalid(errors)) => {
            let mut fields: Vec<String> = errors.into_iter().map(|e| e.field).collect();
            fields.sort();
            fields.dedup();
            fields
        }
        other => panic!("{input}: {other:?}"),
    }
}

#[test]
fn each_invalid_field_of_the_order_is_named_as_the_old_saga_named_it() {
    let with = |pointer: &str, value: Value| {
        let mut o = order();
        *o.pointer_mut(pointer).unwrap() = value;
        o
    };
    assert_eq!(invalid_fields(with("/items", json!([]))), ["input.items"]);
    let mut two = order();
    two["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({"sku": "X", "qty": 0}));
    assert_eq!(invalid_fields(two), ["input.items[1].qty"]);
    assert_eq!(
        invalid_fields(with("/amount_cents", json!(-5))),
        ["input.amount_cents"]
    );
    assert_eq!(
        invalid_fields(with("/amount_cents", json!(0))),
        ["input.amount_cents"]
    );
    for currency in ["EURO", "eur", "XXX"] {
        assert_eq!(
            invalid_fields(with("/currency", json!(currency))),
            ["input.currency"],
            "{currency}"
        );
    }
    let mut blank = with("/order_id", json!(" "));
    blank["customer_id"] = json!("");
    assert_eq!(
        invalid_fields(blank),
        ["input.customer_id", "input.order_id"]
    );
    assert_eq!(
        invalid_fields(with("/items/0/sku", json!("x".repeat(201)))),
        ["input.items[0].sku"]
    );
    let many: Vec<Value> = (0..1_001)
        .map(|i| json!({"sku": format!("S{i}"), "qty": 1}))
        .collect();
    assert_eq!(invalid_fields(with("/items", json!(many))), ["input.items"]);
    // What the old input type refused to deserialise is refused field by field.
    let mut extra = order();
    extra["colour"] = json!("red");
    assert_eq!(invalid_fields(extra), ["input.colour"]);
    assert_eq!(
        invalid_fields(with("/items/0/qty", json!(1.5))),
        ["input.items[0].qty"]
    );
    let mut missing = order();
    missing.as_object_mut().unwrap().remove("currency");
    assert_eq!(invalid_fields(missing), ["input"]);
}
