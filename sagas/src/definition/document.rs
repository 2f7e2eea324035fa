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
    #[serde(default)]
    pub description: String,
    /// Dot path into the start input whose value is the business key when
    /// the caller gives none, e.g. `return_id`.
    #[serde(default)]
    pub business_key: Option<String>,
    /// JSON Schema of the start input.
    #[serde(default)]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub steps: Vec<StepDocument>,
    /// Runs last whenever the saga compensates, e.g. `cancel-order`.
    #[serde(default)]
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
    #[serde(default)]
    pub event: Option<String>,
    /// The command's data: a template whose `${…}` strings are filled in.
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retry: Option<RetryDocument>,
    /// Once it succeeded there is no going back.
    #[serde(default)]
    pub pivot: bool,
    /// Consecutive steps with the same group are sent together and awaited
    /// together (a parallel group).
    #[serde(default)]
    pub group: Option<String>,
    /// The step runs only when this holds; otherwise it is skipped.
    #[serde(default)]
    pub when: Option<ConditionDocument>,
    /// JSON Schema of the `result` its reply carries.
    #[serde(default)]
    pub result_schema: Option<Value>,
    #[serde(default)]
    pub undo: Option<ActionDocument>,
    /// What a success that arrives too late does — after the step failed
    /// or was skipped as failed and the saga compensated without it:
    /// `ignore` it (recorded, the default) or `undo` what it did.
    #[serde(default)]
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
    #[serde(default)]
    pub participant: Option<String>,
    pub command: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Attempts before the saga is suspended for an operator.
    #[serde(default)]
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
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub not_equals: Option<Value>,
    /// Any of these values.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// A number greater than this.
    #[serde(default)]
    pub above: Option<f64>,
    /// A number less than this.
    #[serde(default)]
    pub below: Option<f64>,
    /// The value is there (`true`) or missing or null (`false`).
    #[serde(default)]
    pub exists: Option<bool>,
}

/// A forward step's retries; what is left out comes from the settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDocument {
    pub max_attempts: Option<u32>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    /// Each back-off drawn from 50–100 % of its value (default true).
    pub jitter: Option<bool>,
}
