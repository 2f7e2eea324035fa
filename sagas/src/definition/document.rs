//! A definition file as written: the TOML document's shape, before its
//! cross-references are checked.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub saga_type: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Dot path into the start input whose value is the business key when
    /// the caller gives none, e.g. `return_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// JSON Schema of the start input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub steps: Vec<StepDocument>,
    /// Runs last whenever the saga compensates, e.g. `cancel-order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_compensation: Option<ActionDocument>,
}

/// A forward step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDocument {
    pub name: String,
    pub participant: String,
    /// Versioned command type, e.g. `order.payment.charge.v1`.
    pub command: String,
    /// The name of the event recording its success (default `StepSucceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The command's data: a template whose `${…}` strings are filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDocument>,
    /// Once it succeeded there is no going back.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pivot: bool,
    /// Consecutive steps with the same group are sent together and awaited
    /// together (a parallel group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The step runs only when this holds; otherwise it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionDocument>,
    /// JSON Schema of the `result` its reply carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<ActionDocument>,
    /// What a success that arrives too late does — after the step failed
    /// or was skipped as failed and the saga compensated without it:
    /// `ignore` it (recorded, the default) or `undo` what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_reply: Option<LateReply>,
}

/// See [`StepDocument::late_reply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateReply {
    #[default]
    Ignore,
    Undo,
}

/// An undo or the final compensation: a step of its own that runs backwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDocument {
    pub name: String,
    /// Default: the forward step's participant (an undo only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Attempts before the saga is suspended for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// A test of one value the saga knows, e.g. run a fraud check only above an
/// amount: `when = { value = "${input.amount_cents}", above = 100000 }`.
/// Exactly one test is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionDocument {
    /// A `${…}` expression: the start input or an earlier step's result.
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// Any of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// A number greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// A number less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// The value is there (`true`) or missing or null (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// A forward step's retries; what is left out comes from the settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// Each back-off drawn from 50–100 % of its value (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

/// Fields at their default are left out when a document is written (stored,
/// hashed), so a field added to the format later changes no existing hash.
fn is_false(b: &bool) -> bool {
    !*b
}
