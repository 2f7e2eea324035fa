//! The shipped `return` saga: approve, refund (the pivot), restock. Before the
//! refund a failure rejects the return; after it there is no going back.

use super::*;

fn return_kind() -> Arc<TypeVersions> {
    shipped("return")
}

fn a_return() -> Value {
    json!({
        "return_id": "r-1",
        "order_id": "o-1",
        "customer_id": "c-1",
        "items": [{"sku": "SKU-1", "qty": 1}],
        "amount_cents": 500,
        "currency": "EUR"
    })
}

fn started_with(policy: Policy) -> Harness {
    let mut h = Harness::of(&return_kind());
    h.start(a_return(), policy);
    h
}

/// Approved and refunded: past the pivot, restocking.
fn refunded() -> Harness {
    let mut h = started_with(policy());
    h.ok("approve-return");
    h.ok_with("refund-payment", Some(json!({"refund_id": "rf-1"})));
    assert!(h.state.past_pivot());
    h
}

fn compensations(h: &Harness) -> Vec<&Then> {
    h.history
        .iter()
        .filter_map(then_of)
        .filter(|t| matches!(t, Then::Compensate { .. }))
        .collect()
}

#[test]
fn a_return_is_approved_refunded_restocked_and_completes() {
    let mut h = refunded();
    h.ok("restock-items");
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(
        h.event_names(),
        [
            "SagaStarted",
            "ReturnApproved",
            "CustomerRefunded",
            "ItemsRestocked"
        ]
    );
    let sent: Vec<(&str, &str)> = h
        .commands
        .iter()
        .map(|c| (c.command_type.as_str(), c.participant.as_str()))
        .collect();
    assert_eq!(
        sent,
        [
            ("return.returns.approve.v1", "returns"),
            ("return.payment.refund.v1", "payment"),
            ("return.inventory.restock.v1", "inventory")
        ]
    );
    assert_eq!(
        h.commands[2].data,
        json!({"return_id": "r-1", "items": [{"sku": "SKU-1", "qty": 1}], "refund_id": "rf-1"})
    );
}

#[test]
fn a_refused_approval_rejects_the_return_and_undoes_nothing_else() {
    let mut h = started_with(policy());
    h.reply("approve-return", 1, refused("outside the return window"))
        .unwrap();
    assert_eq!(
        compensations(&h),
        [&Then::Compensate {
            plan: vec!["reject-return".into()]
        }]
    );
    assert_eq!(h.state.status(), Status::Compensating);
    h.ok("reject-return");
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(h.command_steps(), ["approve-return", "reject-return"]);
    assert_eq!(h.last_command().data, json!({"return_id": "r-1"}));
}

#[test]
fn a_refund_that_timed_out_is_cancelled_before_the_return_is_rejected() {
    let mut p = policy();
    p.forward.max_attempts = 1;
    let mut h = started_with(p);
    h.ok("approve-return");
    h.wake_after(1_000);
    assert_eq!(
        compensations(&h),
        [&Then::Compensate {
            plan: vec!["cancel-refund".into(), "reject-return".into()]
        }]
    );
    assert!(
        !h.state.past_pivot(),
        "a refund in doubt is no pivot passed"
    );
}

#[test]
fn after_the_refund_a_restock_that_keeps_failing_suspends_instead_of_compensating() {
    let mut h = refunded();
    // The restock's own budget (5) counts, not the settings' (2).
    for attempt in 1..=5 {
        let events = h
            .reply("restock-items", attempt, failed("warehouse down"))
            .unwrap();
        let expect_retry = attempt < 5;
        assert_eq!(
            matches!(then_of(&events[0]), Some(Then::Retry { .. })),
            expect_retry,
            "attempt {attempt}: {events:?}"
        );
        if expect_retry {
            h.wake_after(2_000);
        }
    }
    assert_eq!(then_of(h.history.last().unwrap()), Some(&Then::Suspend));
    assert_eq!(h.state.status(), Status::Suspended);
    assert!(compensations(&h).is_empty());
    let w = h.state.explain().waiting.unwrap();
    assert_eq!(
        (w.step.as_str(), w.attempt, w.max_attempts),
        ("restock-items", 5, 5)
    );
    assert_eq!(w.on, WaitingOn::Operator);
    assert_eq!(h.state.explain().progress["past_pivot"], true);
    assert!(h.wake_after(600_000).is_empty(), "it waits for a person");

    assert_eq!(
        h.state.allowed_actions(),
        ["retry", "skip", "resume", "cancel"]
    );
    assert_eq!(
        h.act(ActionKind::Compensate),
        Err(Rejection::NotAllowed {
            action: "compensate",
            status: Status::Suspended,
            allowed: vec!["retry", "skip", "resume", "cancel"],
        })
    );
    assert!(matches!(
        h.act(ActionKind::Skip { assume: Assume::Failed }),
        Err(Rejection::Invalid(ref e)) if e[0].field == "assume"
    ));

    h.act(ActionKind::Resume).unwrap();
    assert_eq!(h.state.status(), Status::Running);
    let last = h.last_command();
    assert_eq!((last.step.as_str(), last.attempt), ("restock-items", 6));
    h.ok("restock-items");
    assert_eq!(h.state.status(), Status::Completed);
}

#[test]
fn after_the_refund_a_refused_or_timed_out_restock_never_compensates() {
    let mut h = refunded();
    h.reply("restock-items", 1, refused("unknown sku")).unwrap();
    assert_eq!(
        h.state.status(),
        Status::Suspended,
        "a refusal is not retried"
    );

    let mut h = refunded();
    for _ in 0..5 {
        h.wake_after(1_000); // times out
        h.wake_after(2_000); // back-off over (after the last: nothing due)
    }
    assert_eq!(h.state.status(), Status::Suspended);
    assert!(compensations(&h).is_empty());
    assert_eq!(
        h.command_steps()
            .iter()
            .filter(|s| **s == "restock-items")
            .count(),
        5
    );
}

#[test]
fn while_running_past_the_refund_compensate_is_not_allowed() {
    let mut h = refunded();
    assert_eq!(h.state.allowed_actions(), ["retry", "skip", "cancel"]);
    assert!(matches!(
        h.act(ActionKind::Compensate),
        Err(Rejection::NotAllowed {
            action: "compensate",
            status: Status::Running,
            ..
        })
    ));
    assert!(matches!(
        h.act(ActionKind::Skip { assume: Assume::Failed }),
        Err(Rejection::Invalid(ref e)) if e[0].field == "assume"
    ));
    let before = started_with(policy());
    assert!(before.state.allowed_actions().contains(&"compensate"));
}

#[test]
fn the_saga_deadline_no_longer_applies_after_the_refund() {
    let mut p = policy();
    p.saga_deadline_ms = 3_000;
    let mut h = started_with(p);
    let deadline = t0() + Duration::milliseconds(3_000);
    assert!(h.state.explain().progress["saga_deadline"].is_string());
    h.ok("approve-return");
    h.ok_with("refund-payment", Some(json!({"refund_id": "rf-1"})));
    assert!(h.state.explain().progress["saga_deadline"].is_null());
    assert_eq!(
        h.state.view().wake_at,
        Some(h.now + Duration::milliseconds(1_000)),
        "only the restock's own timeout"
    );
    h.now = deadline + Duration::milliseconds(10_000);
    let events = h.when(Input::Wake { now: h.now }).unwrap();
    assert!(matches!(
        &events[0].kind,
        EventKind::StepFailed {
            cause: FailureCause::TimedOut,
            then: Then::Retry { .. },
            ..
        }
    ));
    assert_eq!(h.state.status(), Status::Running);
}

#[test]
fn a_refund_result_that_breaks_its_schema_is_refused() {
    let mut h = started_with(policy());
    h.ok("approve-return");
    let recorded = h.history.len();
    for (result, field) in [
        (Some(json!({"refund_id": 5})), "result.refund_id"),
        (Some(json!({"id": "rf-1"})), "result"),
        (None, "result"),
    ] {
        let rejection = h
            .reply_with("refund-payment", 1, Outcome::Succeeded, result.clone())
            .unwrap_err();
        let Rejection::InvalidResult { step, errors } = &rejection else {
            panic!("{result:?}: {rejection:?}")
        };
        assert_eq!(step, "refund-payment");
        assert_eq!(errors[0].field, field, "{result:?}");
        assert!(
            rejection.to_string().contains("breaks its schema"),
            "{rejection}"
        );
    }
    assert_eq!(h.history.len(), recorded, "nothing was recorded");
    assert_eq!(h.state.pending().unwrap().step, "refund-payment");
    assert!(!h.state.past_pivot());
    h.ok_with("refund-payment", Some(json!({"refund_id": "rf-1"})));
    assert!(h.state.past_pivot());
}
