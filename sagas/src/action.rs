//! Operator interventions: what a person may ask a saga to do.

use serde::{Deserialize, Serialize};

/// An operator's intervention, with who asked and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub operator: String,
    pub reason: String,
}

/// What the operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// Send the current step again now, as one more attempt.
    Retry,
    /// Take the current step as done with the given result, without its participant.
    Skip { assume: Assume },
    /// Stop going forward and compensate now.
    Compensate,
    /// Continue a suspended saga: send its failed compensation step once more.
    Resume,
    /// Stop the saga where it is, without compensation.
    Cancel,
}

/// The result an operator supplies for a skipped step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assume {
    Succeeded,
    Failed,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Retry => "retry",
            ActionKind::Skip { .. } => "skip",
            ActionKind::Compensate => "compensate",
            ActionKind::Resume => "resume",
            ActionKind::Cancel => "cancel",
        }
    }
}
