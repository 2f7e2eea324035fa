//! Given events, when an input, then events and commands.

mod course;
mod deadlines;
mod operators;
mod properties;
mod refusals;

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
            result: None,
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
                    result: None,
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
