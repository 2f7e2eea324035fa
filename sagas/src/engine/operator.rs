//! Operator interventions: which make sense now, and what each does —
//! including migrating a saga to another version of its definition.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::events::{DefinitionRef, Event, EventKind, FailureCause, Then};
use super::plan::{event, failed};
use super::state::{DefinedSaga, Pending, Wait};
use crate::definition::{Definition, Role};
use crate::{Action, ActionKind, ActionName, Assume, FieldError, Rejection, Status};

impl DefinedSaga {
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
            // A failed group's members still out are awaited, not sent again.
            Status::Compensating if self.pending.iter().any(|p| self.draining(p)) => {
                vec![Skip, Cancel]
            }
            Status::Compensating => vec![Retry, Skip, Cancel],
            Status::Suspended => vec![Retry, Skip, Resume, Cancel],
            Status::Completed | Status::Compensated | Status::Cancelled => return Vec::new(),
        };
        if self.kind.versions.len() > 1 {
            allowed.push(Migrate);
        }
        allowed
    }

    /// An intervention: the audit event, then its effect.
    pub(super) fn on_operator(
        &self,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, Rejection> {
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
                    // Declared not applied now; an earlier attempt that timed
                    // out may still have been: its undo is planned.
                    self.operator_failure(p, reason, p.uncertain)
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
        let target = self
            .kind
            .get(to_version)
            .ok_or_else(|| invalid(self.kind.not_loaded(to_version)))?;
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
        if steps.is_empty() {
            steps = self.misplaced(current, target);
        }
        if !steps.is_empty() {
            return Err(Rejection::NotMigratable {
                saga_type: current.saga_type.clone(),
                to_version,
                steps,
            });
        }
        Ok(EventKind::SagaMigrated {
            from: DefinitionRef::of(current),
            to: DefinitionRef::of(target),
        })
    }

    fn operator_failure(&self, p: &Pending, reason: String, in_doubt: bool) -> EventKind {
        let plan = self.compensation_plan(p, in_doubt);
        failed(p, FailureCause::Operator, reason, Then::Compensate { plan })
    }

    /// Steps that exist in `target` but not where the saga needs them: the
    /// steps before the forward group in hand must be the same, that group
    /// must have the same members, and a step done must keep its pivot flag
    /// (so nothing is skipped, sent twice or undone past a pivot).
    fn misplaced(&self, current: &Definition, target: &Definition) -> Vec<String> {
        let mut out = Vec::new();
        let names = |d: &Definition, r: std::ops::Range<usize>| -> BTreeSet<String> {
            d.steps[r].iter().map(|s| s.action.name.clone()).collect()
        };
        let place = |d: &Definition, name: &str| match d.find(name) {
            Some((_, Role::Forward(i))) => Some(i),
            _ => None,
        };
        let in_hand = self.pending.iter().find_map(|p| match p.role {
            Role::Forward(i) => Some(i),
            _ => None,
        });
        if let Some(i) = in_hand {
            let here = current.group_of(i);
            if let Some(j) = place(target, &current.steps[i].action.name) {
                let there = target.group_of(j);
                let (before, before_there) =
                    (names(current, 0..here.start), names(target, 0..there.start));
                for name in before.symmetric_difference(&before_there) {
                    out.push(format!(
                        "{name} (not before the steps in hand in both versions)"
                    ));
                }
                let (group, group_there) = (names(current, here), names(target, there));
                for name in group.symmetric_difference(&group_there) {
                    out.push(format!("{name} (not in the same parallel group)"));
                }
            }
        }
        for i in &self.done {
            let step = &current.steps[*i];
            let pivot_there = place(target, &step.action.name).map(|j| target.steps[j].pivot);
            if pivot_there.is_some_and(|p| p != step.pivot) {
                out.push(format!(
                    "{} (a pivot in one version only)",
                    step.action.name
                ));
            }
        }
        out
    }
}
