//! The order saga's state and how each event changes it.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};

use super::events::{EventKind, FailureCause, OrderEvent, Then};
use super::input::OrderInput;
use super::steps::Step;
use crate::{Policy, SagaId, Status};

/// The state of one order saga, rebuilt by folding its events.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSaga {
    pub(super) id: SagaId,
    pub(super) started: Option<(OrderInput, Policy)>,
    /// When the saga started: its overall deadline counts from here.
    pub(super) started_at: Option<DateTime<Utc>>,
    pub(super) status: Status,
    /// Forward steps that succeeded, in order.
    pub(super) done: Vec<Step>,
    /// Compensation steps that succeeded, in order.
    pub(super) undone: Vec<Step>,
    /// Compensation steps still to run; the first is the current one.
    pub(super) plan: Vec<Step>,
    pub(super) pending: Option<Pending>,
    pub(super) last_error: Option<String>,
}

/// The step the saga is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub step: Step,
    pub attempt: u32,
    /// When this attempt began.
    pub since: DateTime<Utc>,
    pub wait: Wait,
    /// An attempt of this step timed out, so it may have been applied.
    pub uncertain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The command is out; without a reply by `deadline` the attempt times out.
    Reply { deadline: DateTime<Utc> },
    /// The last attempt failed; the next is sent at `at`.
    Retry { at: DateTime<Utc> },
    /// Out of budget: only an operator moves the saga on.
    Operator,
}

impl OrderSaga {
    pub(super) fn empty(id: SagaId) -> Self {
        Self {
            id,
            started: None,
            started_at: None,
            status: Status::Running,
            done: Vec::new(),
            undone: Vec::new(),
            plan: Vec::new(),
            pending: None,
            last_error: None,
        }
    }

    pub fn id(&self) -> SagaId {
        self.id
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn order(&self) -> Option<&OrderInput> {
        self.started.as_ref().map(|(order, _)| order)
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// Forward steps that succeeded, in order.
    pub fn done(&self) -> &[Step] {
        &self.done
    }

    /// Compensation steps that succeeded, in order.
    pub fn undone(&self) -> &[Step] {
        &self.undone
    }

    /// When the saga must have gone forward to its end, while it still goes
    /// forward; `None` without a deadline or once compensating.
    pub(super) fn saga_deadline(&self) -> Option<DateTime<Utc>> {
        let ms = self.policy().saga_deadline_ms;
        let running = self.status == Status::Running;
        match (self.started_at, ms, running) {
            (Some(at), 1.., true) => Some(at + Duration::milliseconds(ms as i64)),
            _ => None,
        }
    }

    pub(super) fn policy(&self) -> &Policy {
        static DEFAULT: LazyLock<Policy> = LazyLock::new(Policy::default);
        self.started.as_ref().map_or(&DEFAULT, |(_, p)| p)
    }

    pub(super) fn apply(mut self, event: &OrderEvent) -> Self {
        let at = event.at;
        match &event.kind {
            EventKind::SagaStarted { order, policy } => {
                self.started = Some((order.clone(), policy.clone()));
                self.started_at = Some(at);
                self.status = Status::Running;
                self.begin(Step::ReserveInventory, 1, at, false);
            }
            EventKind::StepFailed {
                step,
                cause,
                reason,
                then,
                ..
            } => {
                self.last_error = Some(format!("{}: {reason}", step.name()));
                match then {
                    Then::Retry { at: retry_at } => {
                        if let Some(p) = &mut self.pending {
                            p.wait = Wait::Retry { at: *retry_at };
                            p.uncertain |= *cause == FailureCause::TimedOut;
                        }
                    }
                    Then::Compensate { plan } => {
                        self.status = Status::Compensating;
                        self.plan = plan.clone();
                        self.begin_next_compensation(at);
                    }
                    Then::Suspend => {
                        self.status = Status::Suspended;
                        if let Some(p) = &mut self.pending {
                            p.wait = Wait::Operator;
                        }
                    }
                }
            }
            EventKind::StepRetried { step, attempt } => {
                let uncertain = self.pending.is_some_and(|p| p.uncertain);
                if self.status == Status::Suspended {
                    self.status = Status::Compensating;
                }
                self.begin(*step, *attempt, at, uncertain);
            }
            // The audit record; its effect is the event that follows it.
            EventKind::OperatorIntervened { .. } => {}
            EventKind::SagaCancelled => self.finish(Status::Cancelled),
            kind => {
                if let Some(step) = kind.succeeded_step() {
                    self.succeed(step, at);
                }
            }
        }
        self
    }

    fn succeed(&mut self, step: Step, at: DateTime<Utc>) {
        if step.is_forward() {
            self.done.push(step);
            match step.next_forward() {
                Some(next) => self.begin(next, 1, at, false),
                None => self.finish(Status::Completed),
            }
        } else {
            self.undone.push(step);
            if let Some(i) = self.plan.iter().position(|s| *s == step) {
                self.plan.remove(i);
            }
            // A late success of a suspended compensation moves the saga on.
            self.status = Status::Compensating;
            self.begin_next_compensation(at);
        }
    }

    fn begin_next_compensation(&mut self, at: DateTime<Utc>) {
        match self.plan.first() {
            Some(next) => self.begin(*next, 1, at, false),
            None => self.finish(Status::Compensated),
        }
    }

    fn begin(&mut self, step: Step, attempt: u32, at: DateTime<Utc>, uncertain: bool) {
        let timeout = Duration::milliseconds(self.policy().step_timeout_ms(step.name()) as i64);
        self.pending = Some(Pending {
            step,
            attempt,
            since: at,
            wait: Wait::Reply {
                deadline: at + timeout,
            },
            uncertain,
        });
    }

    fn finish(&mut self, status: Status) {
        self.status = status;
        self.pending = None;
    }
}
