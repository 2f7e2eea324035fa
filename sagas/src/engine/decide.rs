//! How a defined saga answers each kind of input: a start, a reply (late
//! ones included), a timer.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::events::{DefinitionRef, Event, EventKind, FailureCause, Then};
use super::plan::{event, failed};
use super::state::{DefinedSaga, Pending, Wait};
use crate::definition::{LateReply, Role};
use crate::{FieldError, Input, Outcome, Rejection, Reply, Status};

impl DefinedSaga {
    pub(super) fn on_input(&self, input: Input<Value>) -> Result<Vec<Event>, Rejection> {
        let input = match input {
            Input::Start {
                start,
                version,
                policy,
                now,
            } => {
                if self.started.is_some() || self.missing.is_some() {
                    return Err(Rejection::AlreadyStarted);
                }
                let definition = match version {
                    Some(v) => self.kind.get(v).ok_or_else(|| {
                        Rejection::Invalid(vec![FieldError::new(
                            "version",
                            self.kind.not_loaded(v),
                        )])
                    })?,
                    None => self.kind.newest(),
                };
                if let Some(schema) = &definition.input_schema {
                    schema.check(&start, "input").map_err(Rejection::Invalid)?;
                }
                return Ok(vec![event(
                    now,
                    EventKind::SagaStarted {
                        input: start,
                        definition: DefinitionRef::of(definition),
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
            Input::Reply(reply) => match self.late_success(&reply) {
                Some(late) => late.map(|e| vec![e]),
                None if self.status.is_terminal() => Err(Rejection::Terminal(self.status)),
                None => self.on_reply(reply),
            },
            _ if self.status.is_terminal() => Err(Rejection::Terminal(self.status)),
            Input::Wake { now } => Ok(self.on_wake(now)),
            Input::Start { .. } => unreachable!("handled above"),
        }
    }

    fn on_reply(&self, reply: Reply) -> Result<Vec<Event>, Rejection> {
        let unexpected = || Rejection::UnexpectedReply {
            step: reply.step.clone(),
            attempt: reply.attempt,
        };
        let pending = self.pending_of(&reply.step).ok_or_else(unexpected)?;
        if reply.attempt == 0 || reply.attempt > pending.attempt {
            return Err(unexpected());
        }
        let (cause, reason) = match reply.outcome {
            // Every attempt carries the same idempotency key, so a success from
            // an earlier attempt is the step's success.
            Outcome::Succeeded => {
                if let (Role::Forward(i), Some(def)) = (pending.role, self.definition()) {
                    if let Some(schema) = &def.steps[i].result_schema {
                        let result = reply.result.clone().unwrap_or(Value::Null);
                        schema.check(&result, "result").map_err(|errors| {
                            Rejection::InvalidResult {
                                step: reply.step.clone(),
                                errors,
                            }
                        })?;
                    }
                }
                // `null` is no result: stored and read back, it is absent.
                let result = reply.result.filter(|r| !r.is_null());
                return Ok(vec![self.success(pending, result, reply.at)]);
            }
            Outcome::Refused { reason } => (FailureCause::Refused, reason),
            Outcome::Failed { reason } => (FailureCause::Error, reason),
        };
        let awaiting = matches!(pending.wait, Wait::Reply { .. });
        if reply.attempt != pending.attempt || !awaiting {
            return Err(unexpected());
        }
        if self.draining(pending) {
            return Ok(vec![self.drained(pending, cause, reason, reply.at)]);
        }
        Ok(vec![self.failure(pending, cause, reason, reply.at)])
    }

    /// A success of a forward step that is no longer in hand, after the saga
    /// compensated without undoing it (the step failed, or was skipped as
    /// failed): it was applied after all. With `late_reply = "undo"` its undo
    /// runs; otherwise it is ignored (and recorded as such by the caller).
    fn late_success(&self, reply: &Reply) -> Option<Result<Event, Rejection>> {
        if reply.outcome != Outcome::Succeeded || self.pending_of(&reply.step).is_some() {
            return None;
        }
        let compensating_or_done = matches!(
            self.status,
            Status::Compensating | Status::Compensated | Status::Suspended
        );
        let def = self.definition()?;
        let (_, Role::Forward(i)) = def.find(&reply.step)? else {
            return None;
        };
        let step = &def.steps[i];
        let undo = step.undo.as_ref()?;
        let handled = self.done.contains(&i)
            || self.undone.contains(&undo.name)
            || self.plan.contains(&undo.name);
        // Suspended going forward (past a pivot) is not compensating.
        let going_forward = self.status == Status::Suspended
            && self
                .pending
                .iter()
                .any(|p| matches!(p.role, Role::Forward(_)));
        // Only a step that was sent can have been applied.
        let sent = i < self.reached && !self.skipped.contains(&i);
        if step.late_reply != LateReply::Undo
            || !compensating_or_done
            || handled
            || going_forward
            || !sent
        {
            return None;
        }
        let result = reply.result.clone().filter(|r| !r.is_null());
        if let Some(schema) = &step.result_schema {
            let checked = schema.check(result.as_ref().unwrap_or(&Value::Null), "result");
            if let Err(errors) = checked {
                return Some(Err(Rejection::InvalidResult {
                    step: reply.step.clone(),
                    errors,
                }));
            }
        }
        Some(Ok(event(
            reply.at,
            EventKind::LateSuccess {
                step: reply.step.clone(),
                attempt: reply.attempt,
                result,
                undo: undo.name.clone(),
            },
        )))
    }

    /// What is due at `now`, step by step: each step's event is decided on
    /// the state the ones before it left (a parallel group's first failure
    /// turns its other members from retried to awaited).
    fn on_wake(&self, now: DateTime<Utc>) -> Vec<Event> {
        let mut state = self.clone();
        let mut events = Vec::new();
        let steps: Vec<String> = self.pending.iter().map(|p| p.step.clone()).collect();
        for step in steps {
            let Some(p) = state.pending_of(&step) else {
                continue;
            };
            if let Some(e) = state.due(p, now) {
                state = state.apply(&e);
                events.push(e);
            }
        }
        events
    }

    /// What step `p` does at `now`, if anything is due.
    fn due(&self, p: &Pending, now: DateTime<Utc>) -> Option<Event> {
        if let Some(deadline) = self.saga_deadline().filter(|d| now >= *d) {
            // Whatever the step waits for, the saga ran out of time: undo what
            // was done — the step in flight too, when its command is out.
            let in_doubt = p.uncertain || matches!(p.wait, Wait::Reply { .. });
            let reason = format!(
                "the saga's deadline of {} ms passed at {deadline}",
                self.policy().saga_deadline_ms
            );
            let plan = self.compensation_plan(p, in_doubt);
            let then = Then::Compensate { plan };
            return Some(event(
                now,
                failed(p, FailureCause::DeadlineExceeded, reason, then),
            ));
        }
        match p.wait {
            Wait::Reply { deadline } if now >= deadline => {
                let reason = format!(
                    "no reply within {} ms (attempt {})",
                    self.timeout_ms(&p.step),
                    p.attempt
                );
                Some(if self.draining(p) {
                    self.drained(p, FailureCause::TimedOut, reason, now)
                } else {
                    self.failure(p, FailureCause::TimedOut, reason, now)
                })
            }
            Wait::Retry { at } if now >= at => Some(event(
                now,
                EventKind::StepRetried {
                    step: p.step.clone(),
                    attempt: p.attempt + 1,
                },
            )),
            _ => None,
        }
    }
}
