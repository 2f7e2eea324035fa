//! Histories the hand-written order saga wrote, before definitions: they
//! read as engine events, fold to the state the old saga was in, and the
//! saga goes on from there on the order definition's version 1.

mod old;

use chrono::DateTime;

use super::*;

const STARTED: &str = r#"{"at":"2025-11-03T09:15:00Z","type":"SagaStarted","order":{"order_id":"o-77","customer_id":"c-9","items":[{"sku":"BOOK-1","qty":2}],"amount_cents":2598,"currency":"EUR"},"policy":{"step_timeout_ms":30000,"forward":{"max_attempts":3,"backoff_initial_ms":200,"backoff_max_ms":10000},"compensation":{"max_attempts":2,"backoff_initial_ms":200,"backoff_max_ms":10000},"saga_deadline_ms":0}}"#;

/// Inventory reserved, the card declined: compensating.
const DECLINED: &str = r#"[
{"at":"2025-11-03T09:15:00.412Z","type":"InventoryReserved"},
{"at":"2025-11-03T09:15:01.030Z","type":"StepFailed","step":"charge-payment","attempt":1,"cause":"refused","reason":"card declined","then":{"action":"compensate","plan":["release-inventory","cancel-order"]}}
]"#;

/// The charge timed out under its own timeout and waits for its retry.
const CHARGE_RETRYING: &str = r#"[
{"at":"2025-11-03T10:00:00Z","type":"SagaStarted","order":{"order_id":"o-78","customer_id":"c-9","items":[{"sku":"BOOK-1","qty":1}],"amount_cents":1299,"currency":"USD"},"policy":{"step_timeout_ms":30000,"step_timeouts_ms":{"charge-payment":60000},"forward":{"max_attempts":3,"backoff_initial_ms":200,"backoff_max_ms":10000},"compensation":{"max_attempts":5,"backoff_initial_ms":200,"backoff_max_ms":10000},"saga_deadline_ms":600000}},
{"at":"2025-11-03T10:00:00.250Z","type":"InventoryReserved"},
{"at":"2025-11-03T10:01:00.250Z","type":"StepFailed","step":"charge-payment","attempt":1,"cause":"timed_out","reason":"no reply within 60000 ms (attempt 1)","then":{"action":"retry","at":"2025-11-03T10:01:00.391Z"}}
]"#;

/// Confirmation refused, refunded, the release out of budget twice: suspended.
const SUSPENDED: &str = r#"[
{"at":"2025-11-03T09:15:00.300Z","type":"InventoryReserved"},
{"at":"2025-11-03T09:15:00.700Z","type":"PaymentCharged"},
{"at":"2025-11-03T09:15:01Z","type":"StepFailed","step":"confirm-order","attempt":1,"cause":"refused","reason":"the order cannot be confirmed","then":{"action":"compensate","plan":["refund-payment","release-inventory","cancel-order"]}},
{"at":"2025-11-03T09:15:01.500Z","type":"PaymentRefunded"},
{"at":"2025-11-03T09:15:02Z","type":"StepFailed","step":"release-inventory","attempt":1,"cause":"error","reason":"locked","then":{"action":"retry","at":"2025-11-03T09:15:02.150Z"}},
{"at":"2025-11-03T09:15:02.150Z","type":"StepRetried","step":"release-inventory","attempt":2},
{"at":"2025-11-03T09:15:32.150Z","type":"StepFailed","step":"release-inventory","attempt":2,"cause":"timed_out","reason":"no reply within 30000 ms (attempt 2)","then":{"action":"suspend"}},
{"at":"2025-11-03T10:00:00Z","type":"OperatorIntervened","action":{"action":"retry"},"operator":"ops@example.com","reason":"warehouse back"},
{"at":"2025-11-03T10:00:00Z","type":"StepRetried","step":"release-inventory","attempt":3},
{"at":"2025-11-03T10:00:30Z","type":"StepFailed","step":"release-inventory","attempt":3,"cause":"timed_out","reason":"no reply within 30000 ms (attempt 3)","then":{"action":"suspend"}}
]"#;

const COMPLETED: &str = r#"[
{"at":"2025-11-03T09:15:00.300Z","type":"InventoryReserved"},
{"at":"2025-11-03T09:15:00.700Z","type":"PaymentCharged"},
{"at":"2025-11-03T09:15:00.900Z","type":"OrderConfirmed"}
]"#;

const CANCELLED: &str = r#"[
{"at":"2025-11-03T09:20:00Z","type":"OperatorIntervened","action":{"action":"skip","assume":"succeeded"},"operator":"ops@example.com","reason":"reserved by hand"},
{"at":"2025-11-03T09:20:00Z","type":"InventoryReserved"},
{"at":"2025-11-03T09:21:00Z","type":"OperatorIntervened","action":{"action":"cancel"},"operator":"ops@example.com","reason":"duplicate order"},
{"at":"2025-11-03T09:21:00Z","type":"SagaCancelled"}
]"#;

/// `events` after the shared start unless they start themselves, as stored.
fn stored(events: &str) -> Value {
    let mut events: Vec<Value> = serde_json::from_str(events).unwrap();
    if events[0]["type"] != "SagaStarted" {
        events.insert(0, serde_json::from_str(STARTED).unwrap());
    }
    Value::Array(events)
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A harness holding the saga `history` folds to, as loaded from the store.
fn loaded(history: &str) -> Harness {
    let json = stored(history);
    // Exactly what the old saga's derives wrote: nothing more, nothing less.
    let old: Vec<old::OrderEvent> = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&old).unwrap(), json);
    let events: Vec<Event> = serde_json::from_value(json).unwrap();
    // Written again in today's form, they read back the same.
    let again: Vec<Event> = serde_json::from_value(serde_json::to_value(&events).unwrap()).unwrap();
    assert_eq!(again, events);
    let id = SagaId::from_uuid(Uuid::from_u128(77));
    let state = events
        .iter()
        .fold(DefinedSaga::new(&order_kind(), id), |s, e| s.evolve(e));
    Harness {
        state,
        now: events.last().unwrap().at,
        history: events,
        commands: Vec::new(),
    }
}

#[test]
fn old_events_read_as_engine_events() {
    let h = loaded(DECLINED);
    let mut expected_policy = Policy {
        step_timeout_ms: 30_000,
        ..Policy::default()
    };
    expected_policy.compensation.max_attempts = 2;
    assert!(expected_policy.forward.jitter && expected_policy.compensation.jitter);
    assert_eq!(
        h.history,
        [
            Event {
                at: at("2025-11-03T09:15:00Z"),
                kind: EventKind::SagaStarted {
                    input: json!({"order_id": "o-77", "customer_id": "c-9",
                        "items": [{"sku": "BOOK-1", "qty": 2}], "amount_cents": 2598, "currency": "EUR"}),
                    definition: DefinitionRef {
                        saga_type: "order".into(),
                        version: 1,
                        hash: None
                    },
                    policy: expected_policy,
                }
            },
            Event {
                at: at("2025-11-03T09:15:00.412Z"),
                kind: EventKind::StepSucceeded {
                    event: "InventoryReserved".into(),
                    step: "reserve-inventory".into(),
                    result: None
                }
            },
            Event {
                at: at("2025-11-03T09:15:01.030Z"),
                kind: EventKind::StepFailed {
                    step: "charge-payment".into(),
                    attempt: 1,
                    cause: FailureCause::Refused,
                    reason: "card declined".into(),
                    then: Then::Compensate {
                        plan: vec!["release-inventory".into(), "cancel-order".into()]
                    }
                }
            },
        ]
    );
}

#[test]
fn a_compensating_history_goes_on_compensating() {
    let mut h = loaded(DECLINED);
    assert_eq!(h.state.unreadable(), None);
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(h.state.definition().unwrap().version, 1);
    assert_eq!(h.state.done(), ["reserve-inventory"]);
    let p = h.state.pending().unwrap();
    assert_eq!((p.step.as_str(), p.attempt), ("release-inventory", 1));
    let since = at("2025-11-03T09:15:01.030Z");
    assert_eq!(
        p.wait,
        Wait::Reply {
            deadline: since + Duration::seconds(30)
        }
    );
    let progress = h.state.explain().progress;
    assert_eq!(
        progress["compensations_left"],
        json!(["release-inventory", "cancel-order"])
    );
    assert_eq!(
        h.state.view().last_error.as_deref(),
        Some("charge-payment: card declined")
    );
    h.ok(Step::ReleaseInventory);
    let cancel = h.last_command();
    assert_eq!(cancel.step, "cancel-order");
    assert_eq!(
        cancel.data,
        json!({"order_id": "o-77", "customer_id": "c-9"})
    );
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(h.state.undone(), ["release-inventory", "cancel-order"]);
}

#[test]
fn a_retrying_history_keeps_its_policy_and_its_doubt() {
    let mut h = loaded(CHARGE_RETRYING);
    assert_eq!(h.state.status(), Status::Running);
    let retry_at = at("2025-11-03T10:01:00.391Z");
    let p = h.state.pending().unwrap().clone();
    assert_eq!(
        (p.step.as_str(), p.attempt, p.uncertain),
        ("charge-payment", 1, true)
    );
    assert_eq!(p.wait, Wait::Retry { at: retry_at });
    assert_eq!(h.state.view().wake_at, Some(retry_at));
    assert_eq!(
        h.state.explain().progress["saga_deadline"],
        "2025-11-03T10:10:00Z"
    );
    h.now = retry_at;
    h.when(Input::Wake { now: retry_at }).unwrap();
    let charge = h.last_command();
    assert_eq!(
        (charge.step.as_str(), charge.attempt),
        ("charge-payment", 2)
    );
    assert_eq!(charge.data["currency"], "USD");
    assert_eq!(
        h.state.view().wake_at,
        Some(retry_at + Duration::seconds(60)),
        "the charge's own timeout of the old policy"
    );
    h.reply(Step::ChargePayment, 2, refused("card declined"))
        .unwrap();
    // The charge timed out once: it may have been applied and is refunded.
    assert_eq!(
        then_of(h.history.last().unwrap()),
        Some(&Then::Compensate {
            plan: vec![
                "refund-payment".into(),
                "release-inventory".into(),
                "cancel-order".into()
            ]
        })
    );
    assert_eq!(h.last_command().data["charge_id"], Value::Null);
}

#[test]
fn a_suspended_history_waits_for_an_operator_and_moves_on_when_told() {
    let mut h = loaded(SUSPENDED);
    assert_eq!(h.state.status(), Status::Suspended);
    assert_eq!(h.state.done(), ["reserve-inventory", "charge-payment"]);
    assert_eq!(h.state.undone(), ["refund-payment"]);
    let e = h.state.explain();
    let w = e.waiting.unwrap();
    assert_eq!(
        (w.step.as_str(), w.participant.as_str()),
        ("release-inventory", "inventory")
    );
    assert_eq!(
        (w.attempt, w.max_attempts, w.on),
        (3, 2, WaitingOn::Operator)
    );
    assert_eq!(
        e.progress["compensations_left"],
        json!(["release-inventory", "cancel-order"])
    );
    assert_eq!(
        h.state.allowed_actions(),
        ["retry", "skip", "resume", "cancel"]
    );
    assert_eq!(h.state.view().wake_at, None);
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.command_steps(), ["cancel-order"]);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn finished_histories_stay_finished() {
    for (history, status, done) in [
        (COMPLETED, Status::Completed, names(&Step::ALL[..3])),
        (
            CANCELLED,
            Status::Cancelled,
            names(&[Step::ReserveInventory]),
        ),
    ] {
        let h = loaded(history);
        assert_eq!(h.state.status(), status);
        assert_eq!(h.state.done(), done);
        assert_eq!(h.state.view().step, None);
        assert_eq!(h.state.allowed_actions(), Vec::<&str>::new());
        assert_eq!(
            h.state.decide(Input::Wake {
                now: h.now + Duration::hours(1)
            }),
            Err(Rejection::Terminal(status))
        );
    }
}
