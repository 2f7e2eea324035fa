//! Operator interventions: what a person may ask a saga to do, and the names
//! those actions go by in the API, the CLI and the events.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An operator's intervention, with who asked and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub operator: String,
    pub reason: String,
}

/// What the operator asks for. Serialised (in events) under the tag `action`
/// with the same names as [`ActionName`].
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
    /// Run on under another version of the saga's definition.
    Migrate { to_version: u32 },
}

/// The result an operator supplies for a skipped step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assume {
    Succeeded,
    Failed,
}

impl ActionKind {
    /// Which action this is, without its parameters.
    pub fn action_name(self) -> ActionName {
        match self {
            ActionKind::Retry => ActionName::Retry,
            ActionKind::Skip { .. } => ActionName::Skip,
            ActionKind::Compensate => ActionName::Compensate,
            ActionKind::Resume => ActionName::Resume,
            ActionKind::Cancel => ActionName::Cancel,
            ActionKind::Migrate { .. } => ActionName::Migrate,
        }
    }

    /// The action's name, e.g. `skip`; the same as `self.action_name().as_str()`.
    pub fn name(self) -> &'static str {
        self.action_name().as_str()
    }
}

/// The name of an operator action, as the API, the CLI and
/// [`Saga::allowed_actions`](crate::Saga::allowed_actions) spell it: the one
/// list of those names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionName {
    Retry,
    Skip,
    Compensate,
    Resume,
    Cancel,
    Migrate,
}

impl ActionName {
    /// Every action, in the order they are listed to people.
    pub const ALL: [ActionName; 6] = [
        ActionName::Retry,
        ActionName::Skip,
        ActionName::Compensate,
        ActionName::Resume,
        ActionName::Cancel,
        ActionName::Migrate,
    ];

    /// The name, e.g. `compensate`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionName::Retry => "retry",
            ActionName::Skip => "skip",
            ActionName::Compensate => "compensate",
            ActionName::Resume => "resume",
            ActionName::Cancel => "cancel",
            ActionName::Migrate => "migrate",
        }
    }

    /// The action with this exact name, if there is one.
    pub fn parse(s: &str) -> Option<ActionName> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl From<ActionKind> for ActionName {
    fn from(kind: ActionKind) -> Self {
        kind.action_name()
    }
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_parses_back() {
        let distinct: std::collections::HashSet<_> = ActionName::ALL.into_iter().collect();
        assert_eq!(distinct.len(), ActionName::ALL.len());
        for a in ActionName::ALL {
            assert_eq!(ActionName::parse(a.as_str()), Some(a));
            assert_eq!(a.to_string(), a.as_str());
        }
        assert_eq!(ActionName::parse("Retry"), None);
        assert_eq!(ActionName::parse("bogus"), None);
    }

    #[test]
    fn an_action_is_stored_under_its_name() {
        let kinds = [
            ActionKind::Retry,
            ActionKind::Skip {
                assume: Assume::Failed,
            },
            ActionKind::Compensate,
            ActionKind::Resume,
            ActionKind::Cancel,
            ActionKind::Migrate { to_version: 2 },
        ];
        let names: Vec<ActionName> = kinds.iter().map(|k| k.action_name()).collect();
        assert_eq!(names, ActionName::ALL);
        for kind in kinds {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json["action"], kind.name(), "{json}");
        }
    }
}
