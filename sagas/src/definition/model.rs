//! A checked definition: its steps, what each sends, and where each sits.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::condition::Condition;
use super::document::{Document, LateReply, RetryDocument};
use super::schema::Schema;
use super::template;

/// Event names the engine uses itself: no step may name its success so.
pub const RESERVED_EVENTS: [&str; 8] = [
    "SagaStarted",
    "StepFailed",
    "StepRetried",
    "OperatorIntervened",
    "SagaCancelled",
    "SagaMigrated",
    "LateSuccess",
    // Written by the orchestrator when a saga's actor keeps crashing.
    "SuspendedBySupervisor",
];

/// The name of a success event when the definition gives none.
pub const DEFAULT_EVENT: &str = "StepSucceeded";

/// One checked version of one saga type.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub saga_type: String,
    pub version: u32,
    pub description: String,
    /// SHA-256 of the document's canonical JSON: the same for the same
    /// content however it is formatted or commented.
    pub hash: String,
    /// Where in the start input the business key is, if the type says.
    pub business_key: Option<Vec<String>>,
    pub input_schema: Option<Schema>,
    /// The forward steps, in order.
    pub steps: Vec<Step>,
    pub final_compensation: Option<Action>,
    /// The document as loaded, for the API.
    pub document: Document,
}

/// A forward step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    pub retry: RetryDocument,
    pub pivot: bool,
    /// The parallel group the step belongs to, if any.
    pub group: Option<String>,
    /// The step runs only when this holds; otherwise it is skipped.
    pub when: Option<Condition>,
    pub result_schema: Option<Schema>,
    pub undo: Option<Action>,
    /// What a success arriving after the saga compensated without it does.
    pub late_reply: LateReply,
}

/// What one step sends and how its success is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    pub participant: String,
    pub command_type: String,
    pub event: String,
    pub data: Value,
    pub timeout_ms: Option<u64>,
    /// An undo's or the final compensation's attempt budget.
    pub max_attempts: Option<u32>,
}

/// Where a step sits in its definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The forward step at this index.
    Forward(usize),
    /// The undo of the forward step at this index.
    Undo(usize),
    Final,
}

/// Why a definition file was refused: every problem, each with its place
/// (`line 3, column 1` or a path such as `steps[1].undo.data.charge_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub file: String,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

impl Problem {
    /// A problem at `at`; both may quote the file, so control characters
    /// (NUL, escapes, line breaks) are written as `\u{…}`: a problem is one
    /// printable line.
    pub(super) fn new(at: &str, message: &str) -> Problem {
        Problem {
            at: shown(at),
            message: shown(message),
        }
    }
}

fn shown(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    shown
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.file, p.at, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

impl Definition {
    /// The forward steps sent together with step `i`: its parallel group,
    /// or `i` alone.
    pub fn group_of(&self, i: usize) -> std::ops::Range<usize> {
        let Some(group) = self.steps.get(i).and_then(|s| s.group.as_ref()) else {
            return i..i + 1;
        };
        let same = |j: &usize| self.steps[*j].group.as_ref() == Some(group);
        let start = (0..=i).rev().take_while(same).last().unwrap_or(i);
        let end = (i..self.steps.len()).take_while(same).last().unwrap_or(i) + 1;
        start..end
    }

    /// The step called `name` and where it sits.
    pub fn find(&self, name: &str) -> Option<(&Action, Role)> {
        if let Some(f) = self.final_compensation.as_ref().filter(|a| a.name == name) {
            return Some((f, Role::Final));
        }
        self.steps.iter().enumerate().find_map(|(i, s)| {
            if s.action.name == name {
                Some((&s.action, Role::Forward(i)))
            } else {
                s.undo
                    .as_ref()
                    .filter(|u| u.name == name)
                    .map(|u| (u, Role::Undo(i)))
            }
        })
    }

    /// Every step that sends a command: forward steps, their undos, the final one.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.steps
            .iter()
            .flat_map(|s| std::iter::once(&s.action).chain(s.undo.as_ref()))
            .chain(self.final_compensation.as_ref())
    }

    /// The business key the start input carries, if the type names its field.
    pub fn business_key_of(&self, input: &Value) -> Option<String> {
        let value = template::lookup(input, self.business_key.as_ref()?)?;
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The canonical form the hash is computed over.
    pub(super) fn hash_of(document: &Document) -> String {
        let value = serde_json::to_value(document).expect("a document serialises");
        let mut canonical = String::new();
        write_canonical(&value, &mut canonical);
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// JSON with object keys sorted, so the same content hashes the same
/// (fields at their default are not written: see `document`).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
