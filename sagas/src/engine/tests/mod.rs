//! Given events, when an input, then events and commands.
//!
//! Most tests run the shipped `order` definition and check that the engine
//! behaves exactly as the hand-written order saga it replaced did.

mod conditions;
mod course;
mod deadlines;
mod generated;
mod groups;
mod late;
mod legacy;
mod migration;
mod operators;
mod pivots;
mod properties;
mod refusals;
mod results;
mod returns;
mod versions;

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::definition::{Catalog, Definition, Role, TypeVersions};
use crate::{Action, ActionKind, Assume, Outcome, Policy, Reply, RetryPolicy, Status};

/// The shipped definitions, loaded once.
static SHIPPED: LazyLock<Catalog> = LazyLock::new(Catalog::shipped);

static ORDER: LazyLock<Arc<TypeVersions>> = LazyLock::new(|| shipped("order"));

/// The loaded versions of a shipped saga type.
fn shipped(saga_type: &str) -> Arc<TypeVersions> {
    SHIPPED.get(saga_type).expect("a shipped type").clone()
}

fn order_kind() -> Arc<TypeVersions> {
    ORDER.clone()
}

/// The order definition's steps, named as it names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    ReserveInventory,
    ChargePayment,
    ConfirmOrder,
    RefundPayment,
    ReleaseInventory,
    CancelOrder,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::ReserveInventory,
        Step::ChargePayment,
        Step::ConfirmOrder,
        Step::RefundPayment,
        Step::ReleaseInventory,
        Step::CancelOrder,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::ReserveInventory => "reserve-inventory",
            Step::ChargePayment => "charge-payment",
            Step::ConfirmOrder => "confirm-order",
            Step::RefundPayment => "refund-payment",
            Step::ReleaseInventory => "release-inventory",
            Step::CancelOrder => "cancel-order",
        }
    }

    fn parse(name: &str) -> Option<Step> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The compensation that undoes this forward step, as the old saga had it.
    fn undo(self) -> Option<Step> {
        match self {
            Step::ReserveInventory => Some(Step::ReleaseInventory),
            Step::ChargePayment => Some(Step::RefundPayment),
            _ => None,
        }
    }
}

impl AsRef<str> for Step {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

fn names(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(|s| s.name()).collect()
}

/// The decision to undo `steps`, in this order.
fn compensate(steps: &[Step]) -> Then {
    Then::Compensate {
        plan: steps.iter().map(|s| s.name().to_owned()).collect(),
    }
}

#[test]
fn the_test_steps_are_the_order_definitions_steps() {
    let kind = order_kind();
    let def = kind.newest();
    let forward: Vec<&str> = def.steps.iter().map(|s| s.action.name.as_str()).collect();
    assert_eq!(forward, names(&Step::ALL[..3]));
    for (i, step) in Step::ALL[..3].iter().enumerate() {
        assert_eq!(def.find(step.name()).unwrap().1, Role::Forward(i));
        let undo = def.steps[i].undo.as_ref().map(|u| u.name.as_str());
        assert_eq!(undo, step.undo().map(Step::name), "{step:?}");
    }
    assert_eq!(
        def.final_compensation.as_ref().map(|f| f.name.as_str()),
        Some(Step::CancelOrder.name())
    );
    let all: Vec<&str> = def.actions().map(|a| a.name.as_str()).collect();
    assert_eq!(all.len(), Step::ALL.len());
    for step in Step::ALL {
        assert!(all.contains(&step.name()), "{step:?}");
    }
}

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
            jitter: true,
        },
        compensation: RetryPolicy {
            max_attempts: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            jitter: true,
        },
        saga_deadline_ms: 0,
    }
}

fn order() -> Value {
    json!({
        "order_id": "o-1",
        "customer_id": "c-1",
        "items": [{"sku": "SKU-1", "qty": 1}],
        "amount_cents": 500,
        "currency": "EUR"
    })
}

/// A saga under test: its history so far and every command it sent.
struct Harness {
    state: DefinedSaga,
    history: Vec<Event>,
    commands: Vec<Command>,
    now: DateTime<Utc>,
}

impl Harness {
    /// An order saga, not started.
    fn new() -> Self {
        Self::of(&order_kind())
    }

    /// A saga of `kind`, not started.
    fn of(kind: &Arc<TypeVersions>) -> Self {
        let id = SagaId::from_uuid(Uuid::from_u128(7));
        Self {
            state: DefinedSaga::new(kind, id),
            history: Vec::new(),
            commands: Vec::new(),
            now: t0(),
        }
    }

    /// An order saga started on the shipped definition.
    fn started() -> Self {
        let mut h = Self::new();
        h.start(order(), policy());
        h
    }

    fn start(&mut self, start: Value, policy: Policy) {
        self.when(Input::Start {
            start,
            version: None,
            policy,
            now: self.now,
        })
        .unwrap();
    }

    /// Feeds one input; returns the events it produced.
    fn when(&mut self, input: Input<Value>) -> Result<Vec<Event>, Rejection> {
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
        step: impl AsRef<str>,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<Vec<Event>, Rejection> {
        self.reply_with(step, attempt, outcome, None)
    }

    fn reply_with(
        &mut self,
        step: impl AsRef<str>,
        attempt: u32,
        outcome: Outcome,
        result: Option<Value>,
    ) -> Result<Vec<Event>, Rejection> {
        self.now += Duration::milliseconds(10);
        self.when(Input::Reply(Reply {
            step: step.as_ref().into(),
            attempt,
            outcome,
            at: self.now,
            result,
        }))
    }

    fn ok(&mut self, step: impl AsRef<str>) {
        self.ok_with(step, None);
    }

    /// The current attempt of `step` succeeded and returned `result`.
    fn ok_with(&mut self, step: impl AsRef<str>, result: Option<Value>) {
        let attempt = self.state.pending().unwrap().attempt;
        self.reply_with(step, attempt, Outcome::Succeeded, result)
            .unwrap();
    }

    fn act(&mut self, kind: ActionKind) -> Result<Vec<Event>, Rejection> {
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

    fn wake_after(&mut self, ms: i64) -> Vec<Event> {
        self.now += Duration::milliseconds(ms);
        self.when(Input::Wake { now: self.now }).unwrap()
    }

    fn event_names(&self) -> Vec<&str> {
        self.history.iter().map(|e| e.kind.name()).collect()
    }

    fn command_steps(&self) -> Vec<&str> {
        self.commands.iter().map(|c| c.step.as_str()).collect()
    }

    fn last_command(&self) -> &Command {
        self.commands.last().expect("a command was sent")
    }

    /// The state rebuilt from the history as stored (JSON), from scratch.
    fn rebuilt(&self, kind: &Arc<TypeVersions>) -> DefinedSaga {
        let stored = serde_json::to_string(&self.history).unwrap();
        let stored: Vec<Event> = serde_json::from_str(&stored).unwrap();
        stored
            .iter()
            .fold(DefinedSaga::new(kind, self.state.id()), |s, e| s.evolve(e))
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

/// What a `StepFailed` event decided, if it is one.
fn then_of(event: &Event) -> Option<&Then> {
    match &event.kind {
        EventKind::StepFailed { then, .. } => Some(then),
        _ => None,
    }
}

/// Every operator action there is.
fn every_action() -> [ActionKind; 7] {
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
        ActionKind::Migrate { to_version: 1 },
    ]
}

/// One input of every kind: a start, a reply for each step, attempt and
/// outcome, a timer firing and each operator action.
fn every_input(now: DateTime<Utc>) -> Vec<Input<Value>> {
    let mut inputs = vec![
        Input::Start {
            start: order(),
            version: None,
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
fn terminal_refusal(status: Status, input: &Input<Value>) -> Rejection {
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
