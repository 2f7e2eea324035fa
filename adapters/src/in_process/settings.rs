//! The simulated participants' settings, as written in the configuration, and
//! what can be wrong with their rules (`rules` checks them).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How the simulated participants behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Whether the simulated participants exist at all (the `in-process`
    /// transport). Off, every participant must be routed elsewhere.
    pub enabled: bool,
    /// Delay before each reply.
    pub latency_ms: u64,
    /// Share of commands (0.0–1.0) answered with a transient failure.
    pub failure_rate: f64,
    /// How the participants answer, checked in order before the shipped rules;
    /// the first rule that matches a command answers it.
    pub rules: Vec<SimulatorRule>,
    /// Whether the shipped rules (`default_rules.toml`, which drive every path
    /// of the shipped sagas) apply after `rules`.
    pub default_rules: bool,
    /// Keep what was applied in PostgreSQL (tables `simulator_effects`,
    /// `simulator_applications`, and `simulator_deliveries`, a row per command
    /// received, in the orchestrator's database), as a real
    /// participant keeps its own state, so it survives a restart; otherwise in
    /// memory.
    pub durable_memory: bool,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            latency_ms: 0,
            failure_rate: 0.0,
            rules: Vec::new(),
            default_rules: true,
            durable_memory: false,
        }
    }
}

/// One rule as written (`[[simulator.rules]]`): which commands it matches and
/// how the participant answers them. Checked by
/// [`SimulatorSettings::validate`]; the loose types let that check say which
/// rule is wrong and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorRule {
    /// The participant whose commands it matches, e.g. `inventory` (required).
    pub participant: String,
    /// The command type it matches, e.g. `order.inventory.reserve.v1`;
    /// absent: every command of the participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A path into the command's `data`, e.g. `items[*].sku` (`[*]`: any
    /// element, `[2]`: one element); absent: the rule matches every command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `field`: a string value starting with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<Value>,
    /// With `field`: a value equal to this (numbers compare by value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// With `field`: a number greater than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub above: Option<Value>,
    /// With `field`: a number less than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below: Option<Value>,
    /// `refuse` (a business refusal, remembered), `fail` (a transient
    /// failure, not remembered), `never` (no answer) or `succeed`.
    pub answer: String,
    /// For `refuse` and `fail`; `{value}` stands for the matched value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `succeed`: the reply's result object; `{idempotency_key}` in its
    /// strings stands for the command's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The rule stops applying once the participants are repaired
    /// ([`super::SimulatedParticipants::repair`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub until_repaired: bool,
}

/// A rule that cannot be used: which one, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{list}[{index}]: {problem}")]
pub struct InvalidRule {
    /// The list it is in: `simulator.rules`, or the shipped rules.
    pub list: &'static str,
    /// Its position in that list, from 0.
    pub index: usize,
    /// What is wrong with it.
    pub problem: RuleProblem,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleProblem {
    #[error("`participant` is required")]
    MissingParticipant,
    #[error("`command` is empty: leave it out to match every command of the participant")]
    EmptyCommand,
    #[error("`answer` is required: refuse, never, fail or succeed")]
    MissingAnswer,
    #[error("unknown answer `{0}`: refuse, never, fail or succeed")]
    UnknownAnswer(String),
    #[error("`{0}` and `{1}` are both set: a rule has one matcher")]
    TwoMatchers(&'static str, &'static str),
    #[error("`{0}` without `field`: say which value of the command it tests")]
    MatcherWithoutField(&'static str),
    #[error("`field` without a matcher: add one of starts_with, equals, above, below")]
    FieldWithoutMatcher,
    #[error("`field = \"{field}\"` is not a path: {why}")]
    BadField { field: String, why: &'static str },
    #[error("`{0}` must be a string")]
    NotAString(&'static str),
    #[error("`{0}` must be a number")]
    NotANumber(&'static str),
    #[error("`reason` is for refuse and fail, not {0}")]
    ReasonNotAllowed(String),
    #[error("`result` is for succeed, not {0}")]
    ResultNotAllowed(String),
    #[error("`result` must be a table (a JSON object)")]
    ResultNotAnObject,
    #[error("`reason` uses {{value}}, which needs a `field`")]
    ValueWithoutField,
}
