//! How a defined saga answers each kind of input.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::events::{DefinitionRef, Event, EventKind, FailureCause, Then};
use super::state::{DefinedSaga, Pending, Wait};
use crate::definition::{LateReply, Role};
use crate::{
    Action, ActionKind, ActionName, Assume, FieldError, Input, Outcome, Rejection, Reply,
    RetryPolicy, Status,
};

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
                        let loaded: Vec<String> =
                            self.kind.versions.keys().map(u32::to_string).collect();
                        Rejection::Invalid(vec![FieldError::new(
                            "version",
                            format!(
                                "saga type `{}` has no version {v}; loaded: {}",
                                self.kind.saga_type,
                                loaded.join(", ")
                            ),
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
                        definition: DefinitionRef {
                            saga_type: definition.saga_type.clone(),
                            version: definition.version,
                            hash: Some(definition.hash.clone()),
                        },
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
                Some(late) => Ok(vec![late]),
                None if self.status.is_terminal() => Err(Rejection::Terminal(self.status)),
                None => self.on_reply(reply),
            },
            _ if self.status.is_terminal() => Err(Rejection::Terminal(self.status)),
            Input::Wake { now } => Ok(self.on_wake(now)),
            Input::Start { .. } => unreachable!("handled above"),
        }
    }

    /// The operator actions that make sense now: `migrate` only while the
    /// type has another version to move to.
    pub(super) fn allowed(&self) -> Vec<ActionName> {
        use ActionName::{Cancel, Compensate, Migrate, Resume, Retry, Skip};
        if self.started.is_none() {
            return Vec::new();
        }
        let mut allowed = match self.status {
            Status::Running if self.past_pivot() => vec![Retry, Skip, Cancel],
            Status::Running => vec![Retry, Skip, Compensate, Cancel],
            Status::Compensating => vec![Retry, Skip, Cancel],
            Status::Suspended => vec![Retry, Skip, Resume, Cancel],
            Status::Completed | Status::Compensated | Status::Cancelled => return Vec::new(),
        };
        if self.kind.versions.len() > 1 {
            allowed.push(Migrate);
        }
        allowed
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
    fn late_success(&self, reply: &Reply) -> Option<Event> {
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
        let forward_in_hand = self
            .pending
            .iter()
            .any(|p| matches!(p.role, Role::Forward(_)) && self.status == Status::Suspended);
        if step.late_reply != LateReply::Undo || !compensating_or_done || handled || forward_in_hand
        {
            return None;
        }
        Some(event(
            reply.at,
            EventKind::LateSuccess {
                step: reply.step.clone(),
                attempt: reply.attempt,
                undo: undo.name.clone(),
            },
        ))
    }

    fn success(&self, p: &Pending, result: Option<Value>, at: DateTime<Utc>) -> Event {
        let name = self
            .action(&p.step)
            .map(|(a, _)| a.event.clone())
            .unwrap_or_default();
        event(
            at,
            EventKind::StepSucceeded {
                event: name,
                step: p.step.clone(),
                result,
            },
        )
    }

    /// An intervention: the audit event, then its effect.
    fn on_operator(&self, action: Action, now: DateTime<Utc>) -> Result<Vec<Event>, Rejection> {
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
        let Some(p) = self.pending().filter(|_| self.allowed().contains(&name)) else {
            return Err(Rejection::NotAllowed {
                action: name.as_str(),
                status: self.status,
                allowed: crate::Saga::allowed_actions(self),
            });
        };
        let forward = matches!(p.role, Role::Forward(_));
        let reason = format!("operator {}: {}", action.operator, action.reason);
        let effect = match action.kind {
            ActionKind::Retry | ActionKind::Resume => EventKind::StepRetried {
                step: p.step.clone(),
                attempt: p.attempt + 1,
            },
            ActionKind::Skip {
                assume: Assume::Succeeded,
            } => self.success(p, None, now).kind,
            ActionKind::Skip {
                assume: Assume::Failed,
            } => {
                if !forward || self.past_pivot() {
                    let why = if forward {
                        "past the pivot step a step can only be skipped as succeeded"
                    } else {
                        "a compensation step can only be skipped as succeeded"
                    };
                    return Err(Rejection::Invalid(vec![FieldError::new("assume", why)]));
                }
                if self.draining(p) {
                    // An awaited member of a failed group, declared not applied:
                    // its undo leaves the plan, the rest of the plan stays.
                    self.drained(p, FailureCause::Operator, reason, now).kind
                } else {
                    self.operator_failure(p, reason, false)
                }
            }
            ActionKind::Compensate => {
                // A command is out or its failure was transient: it may have been applied.
                let in_doubt = p.uncertain || matches!(p.wait, Wait::Reply { .. });
                self.operator_failure(p, reason, in_doubt)
            }
            ActionKind::Cancel => EventKind::SagaCancelled,
            ActionKind::Migrate { to_version } => self.migration(to_version)?,
        };
        let audit = EventKind::OperatorIntervened {
            action: action.kind,
            operator: action.operator,
            reason: action.reason,
        };
        Ok(vec![event(now, audit), event(now, effect)])
    }

    /// Moving to version `to_version`: allowed when every step the saga is in,
    /// has done (it may have to undo them) or still has to undo exists there
    /// in the same role.
    fn migration(&self, to_version: u32) -> Result<EventKind, Rejection> {
        let current = self.definition().expect("a started saga has a definition");
        let invalid = |why: String| Rejection::Invalid(vec![FieldError::new("to_version", why)]);
        if to_version == current.version {
            return Err(invalid(format!(
                "the saga already runs version {to_version}"
            )));
        }
        let target = self.kind.get(to_version).ok_or_else(|| {
            let loaded: Vec<String> = self.kind.versions.keys().map(u32::to_string).collect();
            invalid(format!(
                "saga type `{}` has no version {to_version}; loaded: {}",
                self.kind.saga_type,
                loaded.join(", ")
            ))
        })?;
        let forward = |role: Role| matches!(role, Role::Forward(_));
        let maps = |name: &str, role: Role| {
            target
                .find(name)
                .is_some_and(|(_, there)| forward(there) == forward(role))
        };
        let mut steps: Vec<String> = Vec::new();
        let needed = self
            .pending
            .iter()
            .map(|p| (p.step.as_str(), p.role))
            .chain(
                self.done
                    .iter()
                    .map(|i| (current.steps[*i].action.name.as_str(), Role::Forward(*i))),
            )
            .chain(self.plan.iter().map(|s| (s.as_str(), Role::Final)));
        for (name, role) in needed {
            if !maps(name, role) && !steps.iter().any(|s| s == name) {
                steps.push(name.to_owned());
            }
        }
        if !steps.is_empty() {
            return Err(Rejection::NotMigratable {
                saga_type: current.saga_type.clone(),
                to_version,
                steps,
            });
        }
        let reference = |d: &crate::definition::Definition| DefinitionRef {
            saga_type: d.saga_type.clone(),
            version: d.version,
            hash: Some(d.hash.clone()),
        };
        Ok(EventKind::SagaMigrated {
            from: reference(current),
            to: reference(target),
        })
    }

    fn operator_failure(&self, p: &Pending, reason: String, in_doubt: bool) -> EventKind {
        EventKind::StepFailed {
            step: p.step.clone(),
            attempt: p.attempt,
            cause: FailureCause::Operator,
            reason,
            then: Then::Compensate {
                plan: self.compensation_plan(p, in_doubt),
            },
        }
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
            return Some(event(
                now,
                EventKind::StepFailed {
                    step: p.step.clone(),
                    attempt: p.attempt,
                    cause: FailureCause::DeadlineExceeded,
                    reason,
                    then: Then::Compensate {
                        plan: self.compensation_plan(p, in_doubt),
                    },
                },
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

    /// A failed group's member, awaited while compensating, answered with a
    /// failure or timed out: a failure means it was not applied, so its undo
    /// leaves the plan (unless an earlier attempt timed out); a timeout keeps
    /// it. Either way it is no longer awaited.
    fn drained(
        &self,
        p: &Pending,
        cause: FailureCause,
        reason: String,
        now: DateTime<Utc>,
    ) -> Event {
        let applied = p.uncertain || cause == FailureCause::TimedOut;
        let undo = match (p.role, self.definition()) {
            (Role::Forward(i), Some(def)) => def.steps[i].undo.as_ref().map(|u| u.name.as_str()),
            _ => None,
        };
        let plan = self
            .plan
            .iter()
            .filter(|s| applied || Some(s.as_str()) != undo)
            .cloned()
            .collect();
        event(
            now,
            EventKind::StepFailed {
                step: p.step.clone(),
                attempt: p.attempt,
                cause,
                reason,
                then: Then::Compensate { plan },
            },
        )
    }

    fn failure(
        &self,
        p: &Pending,
        cause: FailureCause,
        reason: String,
        now: DateTime<Utc>,
    ) -> Event {
        let forward = matches!(p.role, Role::Forward(_));
        let retryable = cause != FailureCause::Refused || !forward;
        let then = if retryable && p.attempt < self.max_attempts(&p.step, p.role) {
            let seed =
                self.id.as_uuid().as_u64_pair().0 ^ (name_hash(&p.step) << 8) ^ p.attempt as u64;
            Then::Retry {
                at: now + self.retry_policy(p.role).backoff(p.attempt, seed),
            }
        } else if forward && !self.past_pivot() {
            let uncertain = p.uncertain || cause == FailureCause::TimedOut;
            Then::Compensate {
                plan: self.compensation_plan(p, uncertain),
            }
        } else {
            Then::Suspend
        };
        event(
            now,
            EventKind::StepFailed {
                step: p.step.clone(),
                attempt: p.attempt,
                cause,
                reason,
                then,
            },
        )
    }

    /// The back-off of a step's retries: the definition's, else the settings'.
    fn retry_policy(&self, role: Role) -> RetryPolicy {
        let policy = self.policy();
        match (role, self.definition()) {
            (Role::Forward(i), Some(def)) => {
                let own = def.steps[i].retry;
                let base = policy.forward;
                RetryPolicy {
                    max_attempts: own.max_attempts.unwrap_or(base.max_attempts),
                    backoff_initial_ms: own.initial_backoff_ms.unwrap_or(base.backoff_initial_ms),
                    backoff_max_ms: own.max_backoff_ms.unwrap_or(base.backoff_max_ms),
                    jitter: own.jitter.unwrap_or(base.jitter),
                }
            }
            (Role::Forward(_), None) => policy.forward,
            _ => policy.compensation,
        }
    }

    /// Undo the forward steps that succeeded in reverse order, then the
    /// final compensation. The failed step's parallel group comes first, its
    /// members in reverse order: those that succeeded, those whose command is
    /// out or may have been applied, and the failed step itself when it may
    /// have been applied. (A step alone is a group of one.)
    fn compensation_plan(&self, failed: &Pending, uncertain: bool) -> Vec<String> {
        let (Some(def), Role::Forward(f)) = (self.definition(), failed.role) else {
            return Vec::new();
        };
        let group = def.group_of(f);
        let undo = |i: &usize| def.steps[*i].undo.as_ref().map(|u| u.name.clone());
        let in_doubt = |q: &Pending| q.uncertain || matches!(q.wait, Wait::Reply { .. });
        let mut members: Vec<usize> = group
            .clone()
            .filter(|i| {
                if *i == f {
                    return uncertain;
                }
                let name = &def.steps[*i].action.name;
                self.done.contains(i) || self.pending_of(name).is_some_and(in_doubt)
            })
            .collect();
        members.reverse();
        let before = self.done.iter().rev().filter(|i| !group.contains(i));
        members
            .iter()
            .chain(before)
            .filter_map(undo)
            .chain(def.final_compensation.iter().map(|f| f.name.clone()))
            .collect()
    }
}

fn event(at: DateTime<Utc>, kind: EventKind) -> Event {
    Event { at, kind }
}

/// FNV-1a: a stable number for a step name, to vary retry jitter by step.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
