//! What becomes of a step: its success event, its failure and what follows
//! it (a retry, or compensation with its plan), and an awaited group
//! member's end.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::events::{Event, EventKind, FailureCause, Then};
use super::state::{DefinedSaga, Pending, Wait};
use crate::definition::Role;
use crate::RetryPolicy;

impl DefinedSaga {
    pub(super) fn success(&self, p: &Pending, result: Option<Value>, at: DateTime<Utc>) -> Event {
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

    /// A failed group's member, awaited while compensating, answered with a
    /// failure or timed out: a failure means it was not applied, so its undo
    /// leaves the plan (unless an earlier attempt timed out); a timeout keeps
    /// it. Either way it is no longer awaited.
    pub(super) fn drained(
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
        event(now, failed(p, cause, reason, Then::Compensate { plan }))
    }

    pub(super) fn failure(
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
        event(now, failed(p, cause, reason, then))
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
    pub(super) fn compensation_plan(&self, failed: &Pending, uncertain: bool) -> Vec<String> {
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

pub(super) fn event(at: DateTime<Utc>, kind: EventKind) -> Event {
    Event { at, kind }
}

/// The attempt of `p` in hand failed (`cause`, `reason`); `then` follows.
pub(super) fn failed(p: &Pending, cause: FailureCause, reason: String, then: Then) -> EventKind {
    EventKind::StepFailed {
        step: p.step.clone(),
        attempt: p.attempt,
        cause,
        reason,
        then,
    }
}

/// FNV-1a: a stable number for a step name, to vary retry jitter by step.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
