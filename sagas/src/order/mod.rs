//! The order-fulfilment saga.
//!
//! ```text
//! start ─► reserve-inventory ─► charge-payment ─► confirm-order ─► completed
//! ```
//! A refusal, or a transient failure or timeout past the step's retry budget,
//! starts compensation: the completed steps are undone in reverse order (refund,
//! release), preceded by the failed step's own undo when its outcome is unknown
//! (it timed out), and followed by cancel-order; the saga then ends
//! `compensated`. A compensation step that keeps failing past its budget leaves
//! the saga `suspended` for an operator.

mod currency;
mod events;
mod input;
mod state;
mod steps;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use events::{EventKind, FailureCause, OrderEvent, Then};
pub use input::{LineItem, OrderInput};
pub use state::{OrderSaga, Pending, Wait};
pub use steps::Step;

use crate::{
    Action, ActionKind, ActionName, Assume, Command, Explanation, FieldError, Input, Outcome,
    Rejection, Reply, Saga, SagaId, Status, View, Waiting, WaitingOn,
};

impl Saga for OrderSaga {
    const TYPE: &'static str = "order";
    type Start = OrderInput;
    type Event = OrderEvent;

    fn new(id: SagaId) -> Self {
        OrderSaga::empty(id)
    }

    fn decide(&self, input: Input<OrderInput>) -> Result<Vec<OrderEvent>, Rejection> {
        let input = match input {
            Input::Start { start, policy, now } => {
                if self.started.is_some() {
                    return Err(Rejection::AlreadyStarted);
                }
                start.validate().map_err(Rejection::Invalid)?;
                return Ok(vec![event(
                    now,
                    EventKind::SagaStarted {
                        order: start,
                        policy,
                    },
                )]);
            }
            other => other,
        };
        if self.started.is_none() {
            return Err(Rejection::NotStarted);
        }
        match input {
            Input::Operator { action, now } => self.on_operator(action, now),
            _ if self.status.is_terminal() => Err(Rejection::Terminal(self.status)),
            Input::Reply(reply) => self.on_reply(reply),
            Input::Wake { now } => Ok(self.on_wake(now)),
            Input::Start { .. } => unreachable!("handled above"),
        }
    }

    fn evolve(self, event: &OrderEvent) -> Self {
        self.apply(event)
    }

    fn destinations() -> Vec<(&'static str, &'static str)> {
        Step::ALL
            .iter()
            .map(|s| (s.participant(), s.command_type()))
            .collect()
    }

    fn commands(&self, event: &OrderEvent) -> Vec<Command> {
        let starts_attempt = match &event.kind {
            EventKind::SagaStarted { .. } | EventKind::StepRetried { .. } => true,
            EventKind::StepFailed { then, .. } => matches!(then, Then::Compensate { .. }),
            kind => kind.succeeded_step().is_some(),
        };
        match (&self.pending, self.order()) {
            (Some(p), Some(order)) if starts_attempt && matches!(p.wait, Wait::Reply { .. }) => {
                vec![p.step.command(self.id, p.attempt, order)]
            }
            _ => Vec::new(),
        }
    }

    fn view(&self) -> View {
        let pending = self.pending.filter(|_| !self.status.is_terminal());
        View {
            status: self.status,
            step: pending.map(|p| p.step.name()),
            attempt: pending.map(|p| p.attempt),
            step_since: pending.map(|p| p.since),
            wake_at: pending
                .and_then(|p| match p.wait {
                    Wait::Reply { deadline } => Some(deadline),
                    Wait::Retry { at } => Some(at),
                    Wait::Operator => None,
                })
                .map(|t| self.saga_deadline().map_or(t, |d| t.min(d))),
            last_error: self.last_error.clone(),
        }
    }

    fn event_type(event: &OrderEvent) -> &'static str {
        event.kind.name()
    }

    fn validate(start: &OrderInput) -> Result<(), Vec<FieldError>> {
        start.validate()
    }

    fn allowed_actions(&self) -> Vec<&'static str> {
        self.allowed().iter().map(|a| a.as_str()).collect()
    }

    fn explain(&self) -> Explanation {
        let policy = self.policy();
        let waiting = self
            .pending
            .filter(|_| !self.status.is_terminal())
            .map(|p| Waiting {
                step: p.step.name(),
                participant: p.step.participant(),
                attempt: p.attempt,
                max_attempts: if p.step.is_forward() {
                    policy.forward.max_attempts
                } else {
                    policy.compensation.max_attempts
                },
                since: p.since,
                on: match p.wait {
                    Wait::Reply { deadline } => WaitingOn::Reply { deadline },
                    Wait::Retry { at } => WaitingOn::Retry { at },
                    Wait::Operator => WaitingOn::Operator,
                },
            });
        let names = |steps: &[Step]| steps.iter().map(|s| s.name()).collect::<Vec<_>>();
        Explanation {
            waiting,
            progress: serde_json::json!({
                "steps_done": names(&self.done),
                "compensations_done": names(&self.undone),
                "compensations_left": names(&self.plan),
                // A timed-out attempt may have been applied: its undo is planned.
                "outcome_uncertain": self.pending.is_some_and(|p| p.uncertain),
                // While going forward: when the saga compensates if not done.
                "saga_deadline": self.saga_deadline(),
            }),
        }
    }
}

impl OrderSaga {
    /// The operator actions that make sense now.
    fn allowed(&self) -> &'static [ActionName] {
        use ActionName::{Cancel, Compensate, Resume, Retry, Skip};
        if self.started.is_none() {
            return &[];
        }
        match self.status {
            Status::Running => &[Retry, Skip, Compensate, Cancel],
            Status::Compensating => &[Retry, Skip, Cancel],
            Status::Suspended => &[Retry, Skip, Resume, Cancel],
            Status::Completed | Status::Compensated | Status::Cancelled => &[],
        }
    }

    fn on_reply(&self, reply: Reply) -> Result<Vec<OrderEvent>, Rejection> {
        let unexpected = || Rejection::UnexpectedReply {
            step: reply.step.clone(),
            attempt: reply.attempt,
        };
        let pending = self.pending.ok_or_else(unexpected)?;
        let step = Step::parse(&reply.step)
            .filter(|s| *s == pending.step)
            .ok_or_else(unexpected)?;
        if reply.attempt == 0 || reply.attempt > pending.attempt {
            return Err(unexpected());
        }
        let (cause, reason) = match reply.outcome {
            // Every attempt carries the same idempotency key, so a success from
            // an earlier attempt is the step's success.
            Outcome::Succeeded => return Ok(vec![event(reply.at, EventKind::succeeded(step))]),
            Outcome::Refused { reason } => (FailureCause::Refused, reason),
            Outcome::Failed { reason } => (FailureCause::Error, reason),
        };
        let awaiting = matches!(pending.wait, Wait::Reply { .. });
        if reply.attempt != pending.attempt || !awaiting {
            return Err(unexpected());
        }
        Ok(vec![self.failure(pending, cause, reason, reply.at)])
    }

    /// An intervention: the audit event, then its effect.
    fn on_operator(
        &self,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, Rejection> {
        let mut invalid = Vec::new();
        if action.operator.trim().is_empty() {
            invalid.push(FieldError::new("operator", "must not be empty"));
        }
        if action.reason.trim().is_empty() {
            invalid.push(FieldError::new("reason", "must say why"));
        }
        if !invalid.is_empty() {
            return Err(Rejection::Invalid(invalid));
        }
        let name = action.kind.action_name();
        // Every status that allows an action has a step in hand.
        let Some(p) = self.pending.filter(|_| self.allowed().contains(&name)) else {
            return Err(Rejection::NotAllowed {
                action: name.as_str(),
                status: self.status,
                allowed: self.allowed_actions(),
            });
        };
        let reason = format!("operator {}: {}", action.operator, action.reason);
        let effect = match action.kind {
            ActionKind::Retry | ActionKind::Resume => EventKind::StepRetried {
                step: p.step,
                attempt: p.attempt + 1,
            },
            ActionKind::Skip {
                assume: Assume::Succeeded,
            } => EventKind::succeeded(p.step),
            ActionKind::Skip {
                assume: Assume::Failed,
            } => {
                if !p.step.is_forward() {
                    return Err(Rejection::Invalid(vec![FieldError::new(
                        "assume",
                        "a compensation step can only be skipped as succeeded",
                    )]));
                }
                self.operator_failure(p, reason, false)
            }
            ActionKind::Compensate => {
                // A command is out or its failure was transient: it may have been applied.
                let in_doubt = p.uncertain || matches!(p.wait, Wait::Reply { .. });
                self.operator_failure(p, reason, in_doubt)
            }
            ActionKind::Cancel => EventKind::SagaCancelled,
        };
        let audit = EventKind::OperatorIntervened {
            action: action.kind,
            operator: action.operator,
            reason: action.reason,
        };
        Ok(vec![event(now, audit), event(now, effect)])
    }

    fn operator_failure(&self, p: Pending, reason: String, in_doubt: bool) -> EventKind {
        EventKind::StepFailed {
            step: p.step,
            attempt: p.attempt,
            cause: FailureCause::Operator,
            reason,
            then: Then::Compensate {
                plan: self.compensation_plan(p.step, in_doubt),
            },
        }
    }

    fn on_wake(&self, now: DateTime<Utc>) -> Vec<OrderEvent> {
        let Some(p) = self.pending else {
            return Vec::new();
        };
        if let Some(deadline) = self.saga_deadline().filter(|d| now >= *d) {
            // Whatever the step waits for, the saga ran out of time: undo what
            // was done — the step in flight too, when its command is out.
            let in_doubt = p.uncertain || matches!(p.wait, Wait::Reply { .. });
            let reason = format!(
                "the saga's deadline of {} ms passed at {deadline}",
                self.policy().saga_deadline_ms
            );
            return vec![event(
                now,
                EventKind::StepFailed {
                    step: p.step,
                    attempt: p.attempt,
                    cause: FailureCause::DeadlineExceeded,
                    reason,
                    then: Then::Compensate {
                        plan: self.compensation_plan(p.step, in_doubt),
                    },
                },
            )];
        }
        match p.wait {
            Wait::Reply { deadline } if now >= deadline => {
                let reason = format!(
                    "no reply within {} ms (attempt {})",
                    self.policy().step_timeout_ms(p.step.name()),
                    p.attempt
                );
                vec![self.failure(p, FailureCause::TimedOut, reason, now)]
            }
            Wait::Retry { at } if now >= at => vec![event(
                now,
                EventKind::StepRetried {
                    step: p.step,
                    attempt: p.attempt + 1,
                },
            )],
            _ => Vec::new(),
        }
    }

    fn failure(
        &self,
        p: Pending,
        cause: FailureCause,
        reason: String,
        now: DateTime<Utc>,
    ) -> OrderEvent {
        let policy = self.policy();
        let retry = if p.step.is_forward() {
            policy.forward
        } else {
            policy.compensation
        };
        let retryable = cause != FailureCause::Refused || !p.step.is_forward();
        let then = if retryable && p.attempt < retry.max_attempts {
            let seed =
                self.id.as_uuid().as_u64_pair().0 ^ ((p.step as u64) << 40) ^ p.attempt as u64;
            Then::Retry {
                at: now + retry.backoff(p.attempt, seed),
            }
        } else if p.step.is_forward() {
            let uncertain = p.uncertain || cause == FailureCause::TimedOut;
            Then::Compensate {
                plan: self.compensation_plan(p.step, uncertain),
            }
        } else {
            Then::Suspend
        };
        event(
            now,
            EventKind::StepFailed {
                step: p.step,
                attempt: p.attempt,
                cause,
                reason,
                then,
            },
        )
    }

    /// Undo the completed steps in reverse order — the failed step first when it
    /// may have been applied — then cancel the order.
    fn compensation_plan(&self, failed: Step, uncertain: bool) -> Vec<Step> {
        let failed_undo = uncertain.then(|| failed.undo()).flatten();
        failed_undo
            .into_iter()
            .chain(self.done.iter().rev().filter_map(|s| s.undo()))
            .chain([Step::CancelOrder])
            .collect()
    }
}

fn event(at: DateTime<Utc>, kind: EventKind) -> OrderEvent {
    OrderEvent { at, kind }
}
