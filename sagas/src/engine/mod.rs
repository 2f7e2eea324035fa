//! The generic saga engine: runs any [`Definition`](crate::definition::Definition).
//!
//! Forward steps run in order — a parallel group's members at once, a step
//! whose `when` does not hold skipped. A refusal, or a transient failure or
//! timeout past the step's retry budget, starts compensation: the failed
//! step's group is undone first (members that succeeded, members whose
//! command is out — awaited first — and the failed step when its outcome is
//! unknown), then the steps before it in reverse order, then the final
//! compensation; the saga then ends `compensated`. Once a pivot step
//! succeeded there is no going back: later failures are retried, then the
//! saga is suspended. A compensation step that keeps failing past its budget
//! leaves the saga `suspended` for an operator. A success arriving after the
//! saga compensated without its step runs that step's undo when the step
//! says `late_reply = "undo"`.
//!
//! - `state`: the state and `evolve`; `decide`: starts, replies, timers;
//!   `operator`: interventions and migration; `plan`: a step's outcome and
//!   the compensation plan; `events`: what is stored.

mod decide;
mod events;
mod operator;
mod plan;
mod state;
#[cfg(test)]
mod tests;
mod text;

use std::sync::Arc;

use serde_json::Value;

pub use events::{DefinitionRef, Event, EventKind, FailureCause, Then};
pub use state::{DefinedSaga, Pending, Started, Wait};
pub use text::JsonText;

use crate::definition::{render, Role, TypeVersions};
use crate::{Command, Explanation, Input, Rejection, Saga, SagaId, View, Waiting, WaitingOn};

impl Saga for DefinedSaga {
    type Kind = TypeVersions;
    type Start = Value;
    type Event = Event;

    fn new(kind: &Arc<TypeVersions>, id: SagaId) -> Self {
        DefinedSaga::empty(kind.clone(), id)
    }

    fn decide(&self, input: Input<Value>) -> Result<Vec<Event>, Rejection> {
        self.on_input(input)
    }

    fn evolve(self, event: &Event) -> Self {
        self.apply(event)
    }

    /// The commands of the attempts `event` began (every member of a
    /// parallel group at once).
    fn commands(&self, _event: &Event) -> Vec<Command> {
        let Some(started) = &self.started else {
            return Vec::new();
        };
        if !self.pending.iter().any(|p| p.began) {
            return Vec::new();
        }
        let (input, results) = self.scope();
        self.pending
            .iter()
            .filter(|p| p.began)
            .filter_map(|p| {
                let (action, _) = started.definition.find(&p.step)?;
                Some(Command {
                    step: action.name.clone(),
                    command_type: action.command_type.clone(),
                    participant: action.participant.clone(),
                    attempt: p.attempt,
                    idempotency_key: format!("{}:{}", self.id, action.name),
                    data: render(&action.data, &input, &results),
                })
            })
            .collect()
    }

    fn view(&self) -> View {
        let pending = self.pending().filter(|_| !self.status.is_terminal());
        // The earliest time any step in hand acts (a deadline or a retry).
        let wake = self
            .pending
            .iter()
            .filter_map(|p| match p.wait {
                Wait::Reply { deadline } => Some(deadline),
                Wait::Retry { at } => Some(at),
                Wait::Operator => None,
            })
            .min();
        View {
            status: self.status,
            step: pending.map(|p| p.step.clone()),
            attempt: pending.map(|p| p.attempt),
            step_since: pending.map(|p| p.since),
            participant: pending.map(|p| self.participant(&p.step)),
            max_attempts: pending.map(|p| self.max_attempts(&p.step, p.role)),
            wake_at: wake.map(|t| self.saga_deadline().map_or(t, |d| t.min(d))),
            last_error: self.last_error.clone(),
        }
    }

    fn event_type(event: &Event) -> String {
        event.kind.name().to_owned()
    }

    fn allowed_actions(&self) -> Vec<&'static str> {
        self.allowed().iter().map(|a| a.as_str()).collect()
    }

    fn explain(&self) -> Explanation {
        let waiting = self
            .pending()
            .filter(|_| !self.status.is_terminal())
            .map(|p| Waiting {
                step: p.step.clone(),
                participant: self.participant(&p.step),
                attempt: p.attempt,
                max_attempts: self.max_attempts(&p.step, p.role),
                since: p.since,
                on: match p.wait {
                    Wait::Reply { deadline } => WaitingOn::Reply { deadline },
                    Wait::Retry { at } => WaitingOn::Retry { at },
                    Wait::Operator => WaitingOn::Operator,
                },
            });
        let definition = self.definition().map(
            |d| serde_json::json!({"saga_type": d.saga_type, "version": d.version, "hash": d.hash}),
        );
        Explanation {
            waiting,
            progress: serde_json::json!({
                "definition": definition,
                "steps_done": self.done(),
                "steps_skipped": self.skipped(),
                "compensations_done": self.undone,
                "compensations_left": self.plan,
                // A timed-out attempt may have been applied: its undo is planned.
                "outcome_uncertain": self.pending().is_some_and(|p| p.uncertain),
                // Every step in hand: more than one in a parallel group.
                "in_hand": self.pending.iter().map(|p| &p.step).collect::<Vec<_>>(),
                // A pivot step succeeded: failures are retried, never compensated.
                "past_pivot": self.past_pivot(),
                // While going forward: when the saga compensates if not done.
                "saga_deadline": self.saga_deadline(),
            }),
        }
    }

    fn unreadable(&self) -> Option<String> {
        self.missing.as_ref().map(|d| {
            format!(
                "the saga runs under version {} of saga type `{}` (hash {}), which is not loaded",
                d.version,
                d.saga_type,
                d.hash.as_deref().unwrap_or("not recorded")
            )
        })
    }
}

impl DefinedSaga {
    /// The participant that answers `step` (empty when the definition is not loaded).
    pub(crate) fn participant(&self, step: &str) -> String {
        self.action(step)
            .map(|(a, _)| a.participant.clone())
            .unwrap_or_default()
    }

    /// The attempt budget of `step`: the definition's, else the settings'.
    pub(crate) fn max_attempts(&self, step: &str, role: Role) -> u32 {
        let policy = self.policy();
        let own = self.action(step).and_then(|(a, _)| a.max_attempts);
        match role {
            Role::Forward(i) => self
                .definition()
                .and_then(|d| d.steps[i].retry.max_attempts)
                .unwrap_or(policy.forward.max_attempts),
            Role::Undo(_) | Role::Final => own.unwrap_or(policy.compensation.max_attempts),
        }
        .max(1)
    }
}
