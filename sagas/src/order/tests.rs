//! Given events, when an input, then events and commands.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::{Action, ActionKind, Assume, Policy, RetryPolicy, Status};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn policy() -> Policy {
    Policy {
        step_timeout_ms: 1_000,
        step_timeouts_ms: Default::default(),
        forward: RetryPolicy {
            max_attempts: 2,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
        },
        compensation: RetryPolicy {
            max_attempts: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
        },
        saga_deadline_ms: 0,
    }
}

fn order() -> OrderInput {
    OrderInput {
        order_id: "o-1".into(),
        customer_id: "c-1".into(),
        items: vec![LineItem {
            sku: "SKU-1".into(),
            qty: 1,
        }],
        amount_cents: 500,
        currency: "EUR".into(),
    }
}

/// A saga under test: its history so far and every command it sent.
struct Harness {
    state: OrderSaga,
    history: Vec<OrderEvent>,
    commands: Vec<Command>,
    now: DateTime<Utc>,
}

impl Harness {
    fn new() -> Self {
        let id = SagaId::from_uuid(Uuid::from_u128(7));
        Self {
            state: OrderSaga::new(id),
            history: Vec::new(),
            commands: Vec::new(),
            now: t0(),
        }
    }

    fn started() -> Self {
        let mut h = Self::new();
        h.when(Input::Start {
            start: order(),
            policy: policy(),
            now: t0(),
        })
        .unwrap();
        h
    }

    /// Feeds one input; returns the events it produced.
    fn when(&mut self, input: Input<OrderInput>) -> Result<Vec<OrderEvent>, Rejection> {
        let events = self.state.decide(input)?;
        for e in &events {
            self.state = self.state.clone().evolve(e);
            self.commands.extend(self.state.commands(e));
            self.history.push(e.clone());
        }
        Ok(events)
    }

    fn reply(
        &mut self,
        step: Step,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<Vec<OrderEvent>, Rejection> {
        self.now += Duration::milliseconds(10);
        self.when(Input::Reply(Reply {
            step: step.name().into(),
            attempt,
            outcome,
            at: self.now,
        }))
    }

    fn ok(&mut self, step: Step) {
        let attempt = self.state.pending().unwrap().attempt;
        self.reply(step, attempt, Outcome::Succeeded).unwrap();
    }

    fn act(&mut self, kind: ActionKind) -> Result<Vec<OrderEvent>, Rejection> {
        self.now += Duration::milliseconds(10);
        self.when(Input::Operator {
            action: Action {
                kind,
                operator: "ops@example.com".into(),
                reason: "incident 42".into(),
            },
            now: self.now,
        })
    }

    fn wake_after(&mut self, ms: i64) -> Vec<OrderEvent> {
        self.now += Duration::milliseconds(ms);
        self.when(Input::Wake { now: self.now }).unwrap()
    }

    fn event_names(&self) -> Vec<&'static str> {
        self.history.iter().map(|e| e.kind.name()).collect()
    }

    fn command_steps(&self) -> Vec<&'static str> {
        self.commands.iter().map(|c| c.step).collect()
    }
}

fn refused(reason: &str) -> Outcome {
    Outcome::Refused {
        reason: reason.into(),
    }
}

fn failed(reason: &str) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
    }
}

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
fn start_is_refused_when_the_order_is_invalid_or_already_started() {
    let mut bad = order();
    bad.items.clear();
    let rejection = OrderSaga::new(SagaId::from_uuid(Uuid::nil()))
        .decide(Input::Start {
            start: bad,
            policy: policy(),
            now: t0(),
        })
        .unwrap_err();
    assert!(matches!(rejection, Rejection::Invalid(ref e) if e[0].field == "input.items"));

    let mut h = Harness::started();
    let again = h.when(Input::Start {
        start: order(),
        policy: policy(),
        now: t0(),
    });
    assert_eq!(again, Err(Rejection::AlreadyStarted));
}

#[test]
fn inputs_before_start_are_refused() {
    let saga = OrderSaga::new(SagaId::from_uuid(Uuid::nil()));
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
        [
            Step::RefundPayment,
            Step::ReleaseInventory,
            Step::CancelOrder
        ]
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
    assert_eq!(h.state.pending().unwrap().step, Step::ChargePayment);
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
    h.when(Input::Start {
        start: order(),
        policy,
        now: t0(),
    })
    .unwrap();
    h.wake_after(1_000);
    assert_eq!(
        h.command_steps(),
        ["reserve-inventory", "release-inventory"]
    );
}

#[test]
fn compensation_out_of_budget_suspends_and_a_late_success_resumes() {
    let mut h = suspended();
    assert_eq!(h.state.status(), Status::Suspended);
    let view = h.state.view();
    assert_eq!(view.step, Some("release-inventory"));
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
fn duplicate_late_and_foreign_replies_change_nothing() {
    let mut h = Harness::started();
    let refuse = |h: &mut Harness, step: &str, attempt: u32, outcome: Outcome| {
        h.now += Duration::milliseconds(10);
        let reply = Reply {
            step: step.into(),
            attempt,
            outcome,
            at: h.now,
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

/// Every operator action there is.
fn every_action() -> [ActionKind; 6] {
    [
        ActionKind::Retry,
        ActionKind::Skip {
            assume: Assume::Succeeded,
        },
        ActionKind::Skip {
            assume: Assume::Failed,
        },
        ActionKind::Compensate,
        ActionKind::Resume,
        ActionKind::Cancel,
    ]
}

/// One input of every kind: a start, a reply for each step, attempt and
/// outcome, a timer firing and each operator action.
fn every_input(now: DateTime<Utc>) -> Vec<Input<OrderInput>> {
    let mut inputs = vec![
        Input::Start {
            start: order(),
            policy: policy(),
            now,
        },
        Input::Wake { now },
    ];
    for step in Step::ALL {
        for attempt in 1..=3 {
            for outcome in [Outcome::Succeeded, refused("no"), failed("flaky")] {
                inputs.push(Input::Reply(Reply {
                    step: step.name().into(),
                    attempt,
                    outcome,
                    at: now,
                }));
            }
        }
    }
    for kind in every_action() {
        let action = Action {
            kind,
            operator: "ops@example.com".into(),
            reason: "incident 42".into(),
        };
        inputs.push(Input::Operator { action, now });
    }
    inputs
}

/// How a terminal saga with `status` refuses `input`.
fn terminal_refusal(status: Status, input: &Input<OrderInput>) -> Rejection {
    match input {
        Input::Start { .. } => Rejection::AlreadyStarted,
        Input::Operator { action, .. } => Rejection::NotAllowed {
            action: action.kind.name(),
            status,
            allowed: Vec::new(),
        },
        Input::Reply(_) | Input::Wake { .. } => Rejection::Terminal(status),
    }
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
        let back: OrderEvent = serde_json::from_value(json).unwrap();
        assert_eq!(&back, e);
    }
}

fn suspended() -> Harness {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    for attempt in 1..=3 {
        h.reply(Step::ReleaseInventory, attempt, failed("locked"))
            .unwrap();
        if attempt < 3 {
            h.wake_after(2_000);
        }
    }
    assert_eq!(h.state.status(), Status::Suspended);
    h
}

#[test]
fn resume_sends_the_failed_compensation_again_and_records_who_and_why() {
    let mut h = suspended();
    let events = h.act(ActionKind::Resume).unwrap();
    let EventKind::OperatorIntervened {
        action,
        operator,
        reason,
    } = &events[0].kind
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (*action, operator.as_str(), reason.as_str()),
        (ActionKind::Resume, "ops@example.com", "incident 42")
    );
    assert_eq!(
        events[1].kind,
        EventKind::StepRetried {
            step: Step::ReleaseInventory,
            attempt: 4
        }
    );
    assert_eq!(h.state.status(), Status::Compensating);
    let last = h.commands.last().unwrap();
    assert_eq!((last.step, last.attempt), ("release-inventory", 4));
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn an_operator_retry_that_fails_again_suspends_again() {
    let mut h = suspended();
    h.act(ActionKind::Retry).unwrap();
    h.reply(Step::ReleaseInventory, 4, failed("still locked"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Suspended);
}

#[test]
fn skipping_a_suspended_compensation_as_done_moves_on() {
    let mut h = suspended();
    let sent = h.commands.len();
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.state.undone(), [Step::ReleaseInventory]);
    assert_eq!(h.commands.len(), sent + 1);
    assert_eq!(h.commands.last().unwrap().step, "cancel-order");
    assert!(matches!(
        h.act(ActionKind::Skip { assume: Assume::Failed }),
        Err(Rejection::Invalid(ref e)) if e[0].field == "assume"
    ));
}

#[test]
fn skipping_a_forward_step_as_succeeded_continues_without_its_participant() {
    let mut h = Harness::started();
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.state.done(), [Step::ReserveInventory]);
    assert_eq!(h.command_steps(), ["reserve-inventory", "charge-payment"]);
    assert_eq!(
        h.event_names(),
        ["SagaStarted", "OperatorIntervened", "InventoryReserved"]
    );
}

#[test]
fn skipping_a_forward_step_as_failed_compensates_without_its_undo() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.act(ActionKind::Skip {
        assume: Assume::Failed,
    })
    .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(&h.command_steps()[2..], ["release-inventory"]);
}

#[test]
fn compensate_now_also_undoes_the_step_in_flight() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.act(ActionKind::Compensate).unwrap();
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(
        h.state.undone(),
        [
            Step::RefundPayment,
            Step::ReleaseInventory,
            Step::CancelOrder
        ]
    );
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn cancel_stops_the_saga_without_compensation() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    let sent = h.commands.len();
    h.act(ActionKind::Cancel).unwrap();
    assert_eq!(h.state.status(), Status::Cancelled);
    assert_eq!(h.commands.len(), sent, "nothing is sent on cancel");
    assert_eq!(h.state.view().step, None);
    assert!(matches!(
        h.reply(Step::ChargePayment, 1, Outcome::Succeeded),
        Err(Rejection::Terminal(Status::Cancelled))
    ));
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

#[derive(Debug, Clone)]
enum Op {
    Reply(usize, u32, u8),
    Wake(i64),
    Repeat(usize),
    Act(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..Step::ALL.len(), 1u32..4, 0u8..4).prop_map(|(s, a, o)| Op::Reply(s, a, o)),
        2 => (0i64..3_000).prop_map(Op::Wake),
        1 => (0usize..64).prop_map(Op::Repeat),
        1 => (0u8..6).prop_map(Op::Act),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any sequence of replies (duplicates, late, out of order, for the wrong
    /// step) and timer firings keeps the saga's invariants.
    #[test]
    fn any_input_sequence_keeps_the_invariants(ops in proptest::collection::vec(op(), 0..60)) {
        let mut h = Harness::started();
        let mut inputs: Vec<Input<OrderInput>> = Vec::new();
        let mut terminal_at: Option<usize> = None;
        for op in ops {
            let input = match op {
                Op::Reply(s, attempt, o) => {
                    h.now += Duration::milliseconds(5);
                    let outcome = match o {
                        0 | 1 => Outcome::Succeeded,
                        2 => refused("no"),
                        _ => failed("flaky"),
                    };
                    Input::Reply(Reply { step: Step::ALL[s].name().into(), attempt, outcome, at: h.now })
                }
                Op::Wake(ms) => {
                    h.now += Duration::milliseconds(ms);
                    Input::Wake { now: h.now }
                }
                Op::Act(a) => {
                    h.now += Duration::milliseconds(5);
                    let kind = match a {
                        0 => ActionKind::Retry,
                        1 => ActionKind::Skip { assume: Assume::Succeeded },
                        2 => ActionKind::Skip { assume: Assume::Failed },
                        3 => ActionKind::Compensate,
                        4 => ActionKind::Resume,
                        _ => ActionKind::Cancel,
                    };
                    let action = Action { kind, operator: "op".into(), reason: "test".into() };
                    Input::Operator { action, now: h.now }
                }
                Op::Repeat(i) if !inputs.is_empty() => inputs[i % inputs.len()].clone(),
                Op::Repeat(_) => continue,
            };
            inputs.push(input.clone());
            let expected = terminal_at.map(|_| terminal_refusal(h.state.status(), &input));
            let result = h.when(input);
            if let (Some(at), Some(expected)) = (terminal_at, expected) {
                prop_assert_eq!(result, Err(expected), "input after terminal at {}", at);
            }
            if h.state.status().is_terminal() && terminal_at.is_none() {
                terminal_at = Some(h.history.len());
            }
        }

        // Folding the history as stored (JSON) rebuilds the same state.
        let stored = serde_json::to_string(&h.history).unwrap();
        let stored: Vec<OrderEvent> = serde_json::from_str(&stored).unwrap();
        let rebuilt = stored.iter().fold(OrderSaga::new(h.state.id()), |s, e| s.evolve(e));
        prop_assert_eq!(&rebuilt, &h.state);

        // No compensation step succeeds twice, and compensation happens once.
        let undone = h.state.undone();
        for s in undone {
            prop_assert_eq!(undone.iter().filter(|x| *x == s).count(), 1);
        }
        let plans = h.history.iter().filter(|e| matches!(&e.kind, EventKind::StepFailed { then: Then::Compensate { .. }, .. })).count();
        prop_assert!(plans <= 1);

        // Compensation undoes completed forward steps in reverse order (after the
        // failed step's own undo when it may have been applied), then cancels; the
        // steps are undone in the plan's order.
        let plan = h.history.iter().find_map(|e| match &e.kind {
            EventKind::StepFailed { then: Then::Compensate { plan }, .. } => Some(plan.clone()),
            _ => None,
        });
        if let Some(plan) = plan {
            let reversed: Vec<Step> = h.state.done().iter().rev().filter_map(|s| s.undo()).collect();
            prop_assert_eq!(plan.last(), Some(&Step::CancelOrder));
            let undos = &plan[..plan.len() - 1];
            prop_assert!(undos.ends_with(&reversed), "{:?} vs {:?}", undos, reversed);
            prop_assert!(undos.len() <= reversed.len() + 1);
            prop_assert!(plan.starts_with(undone), "{:?} not a prefix of {:?}", undone, plan);
            if h.state.status() == Status::Compensated {
                prop_assert_eq!(undone, &plan[..]);
            }
        } else {
            prop_assert!(undone.is_empty());
        }

        // Commands of one step are attempts 1, 2, … sharing one key, `<saga id>:<step>`.
        for step in Step::ALL {
            let sent: Vec<&Command> = h.commands.iter().filter(|c| c.step == step.name()).collect();
            let attempts: Vec<u32> = sent.iter().map(|c| c.attempt).collect();
            prop_assert!(attempts.iter().enumerate().all(|(i, a)| *a == i as u32 + 1), "{:?}: {:?}", step, attempts);
            let key = format!("{}:{}", h.state.id(), step.name());
            for c in sent {
                prop_assert_eq!(&c.idempotency_key, &key);
            }
        }
    }
}

#[test]
fn explain_says_what_a_suspended_saga_waits_for() {
    let h = suspended();
    let e = h.state.explain();
    let w = e.waiting.expect("a suspended saga waits");
    assert_eq!(
        (w.step, w.participant, w.on),
        ("release-inventory", "inventory", WaitingOn::Operator)
    );
    assert_eq!((w.attempt, w.max_attempts), (3, 3));
    assert_eq!(e.progress["compensations_left"][0], "release-inventory");
}

#[test]
fn explain_gives_the_reply_deadline_and_nothing_once_terminal() {
    let mut h = Harness::started();
    let w = h.state.explain().waiting.unwrap();
    assert_eq!(
        w.on,
        WaitingOn::Reply {
            deadline: w.since + Duration::milliseconds(1_000)
        }
    );
    assert_eq!((w.attempt, w.max_attempts), (1, 2));
    h.act(ActionKind::Cancel).unwrap();
    assert_eq!(h.state.explain().waiting, None);
}

fn with_deadline(forward_attempts: u32, deadline_ms: u64) -> Harness {
    let mut h = Harness::new();
    let mut p = policy();
    p.forward.max_attempts = forward_attempts;
    p.saga_deadline_ms = deadline_ms;
    h.when(Input::Start {
        start: order(),
        policy: p,
        now: t0(),
    })
    .unwrap();
    h
}

#[test]
fn a_deadline_shorter_than_the_retries_compensates_when_it_passes() {
    // Ten attempts of 1 s each would take over 10 s; the saga has 2 s.
    let mut h = with_deadline(10, 2_000);
    h.ok(Step::ReserveInventory);
    let deadline = t0() + Duration::milliseconds(2_000);
    assert_eq!(
        h.state.view().wake_at,
        Some(h.now + Duration::milliseconds(1_000))
    );
    h.wake_after(1_000); // charge-payment attempt 1 times out
    assert!(h
        .wake_after(150)
        .iter()
        .any(|e| matches!(e.kind, EventKind::StepRetried { .. })));
    assert_eq!(
        h.state.view().wake_at,
        Some(deadline),
        "the saga's deadline comes first"
    );
    assert!(
        h.wake_after(100).is_empty(),
        "nothing is due before the deadline"
    );
    h.now = deadline;
    let events = h.when(Input::Wake { now: deadline }).unwrap();
    assert!(matches!(
        &events[0].kind,
        EventKind::StepFailed {
            cause: FailureCause::DeadlineExceeded,
            step: Step::ChargePayment,
            ..
        }
    ));
    assert_eq!(h.state.status(), Status::Compensating);
    // The charge in flight may have been applied: it is refunded first.
    assert_eq!(&h.command_steps()[3..], ["refund-payment"]);
    // Compensation is not cut short by the deadline: only step timeouts wake it.
    assert_eq!(
        h.state.view().wake_at,
        Some(deadline + Duration::milliseconds(1_000))
    );
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn without_a_deadline_only_the_step_timeouts_count() {
    let mut h = with_deadline(2, 0);
    assert_eq!(
        h.state.view().wake_at,
        Some(t0() + Duration::milliseconds(1_000))
    );
    assert!(h.wake_after(999).is_empty());
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
}

#[test]
fn a_step_can_have_a_timeout_of_its_own() {
    let mut h = Harness::new();
    let mut p = policy();
    p.step_timeouts_ms.insert("charge-payment".into(), 5_000);
    h.when(Input::Start {
        start: order(),
        policy: p,
        now: t0(),
    })
    .unwrap();
    let reserve = h.state.view().wake_at.unwrap();
    assert_eq!(reserve, t0() + Duration::milliseconds(1_000));
    h.ok(Step::ReserveInventory);
    assert_eq!(
        h.state.view().wake_at,
        Some(h.now + Duration::milliseconds(5_000))
    );
    assert!(h.wake_after(4_999).is_empty());
    let events = h.wake_after(1);
    assert!(matches!(
        &events[0].kind,
        EventKind::StepFailed { cause: FailureCause::TimedOut, reason, .. } if reason.contains("5000 ms")
    ));
}
