//! The simulated participants' rules: which commands a rule matches, and how
//! the participant answers them. The rules know no saga's steps, only
//! participants, command types and the commands' data.

mod path;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sagaplane_orchestrator::ports::OutboxMessage;
use sagaplane_sagas::Outcome;
use serde::Deserialize;
use serde_json::Value;

use self::path::FieldPath;
use super::settings::{InvalidRule, RuleProblem, SimulatorRule, SimulatorSettings};

/// The rules shipped for the shipped sagas: every path of them can be driven
/// from the outside through the commands' data.
const SHIPPED: &str = include_str!("default_rules.toml");

/// How a participant answers a command.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Answer {
    pub outcome: Outcome,
    /// For a success: the reply's result.
    pub result: Option<Value>,
}

/// The rules in the order they are checked: the configured ones, then the
/// shipped ones unless they are turned off.
pub(super) struct Rules {
    configured: Vec<Rule>,
    shipped: &'static [Rule],
}

impl Rules {
    pub(super) fn new(settings: &SimulatorSettings) -> Result<Self, InvalidRule> {
        Ok(Self {
            configured: compile("simulator.rules", &settings.rules)?,
            shipped: if settings.default_rules {
                shipped()
            } else {
                &[]
            },
        })
    }

    /// How the participant answers `command` (`repaired`: after
    /// [`super::SimulatedParticipants::repair`]); `None`: it stays silent.
    pub(super) fn answer(&self, command: &OutboxMessage, repaired: bool) -> Option<Answer> {
        for rule in self.configured.iter().chain(self.shipped) {
            let applies = rule.participant == command.participant
                && rule
                    .command
                    .as_ref()
                    .is_none_or(|c| *c == command.command_type)
                && !(rule.until_repaired && repaired);
            if !applies {
                continue;
            }
            let matched = match &rule.condition {
                None => None,
                Some((path, matcher)) => match path.find(&command.data, &|v| matcher.test(v)) {
                    Some(value) => Some(value),
                    None => continue,
                },
            };
            return rule.response.answer(command, matched);
        }
        Some(Answer {
            outcome: Outcome::Succeeded,
            result: None,
        })
    }
}

struct Rule {
    participant: String,
    command: Option<String>,
    /// Absent: every command of the participant (and command type) matches.
    condition: Option<(FieldPath, Matcher)>,
    response: Response,
    until_repaired: bool,
}

enum Matcher {
    StartsWith(String),
    Equals(Value),
    Above(f64),
    Below(f64),
}

enum Response {
    Refuse(Option<String>),
    Fail(Option<String>),
    Never,
    Succeed(Option<Value>),
}

fn compile(list: &'static str, rules: &[SimulatorRule]) -> Result<Vec<Rule>, InvalidRule> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            Rule::compile(rule).map_err(|problem| InvalidRule {
                list,
                index,
                problem,
            })
        })
        .collect()
}

impl Rule {
    fn compile(r: &SimulatorRule) -> Result<Self, RuleProblem> {
        if r.participant.trim().is_empty() {
            return Err(RuleProblem::MissingParticipant);
        }
        if r.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(RuleProblem::EmptyCommand);
        }
        let matchers: Vec<(&'static str, &Value)> = [
            ("starts_with", &r.starts_with),
            ("equals", &r.equals),
            ("above", &r.above),
            ("below", &r.below),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_ref()?)))
        .collect();
        let condition = match (&r.field, matchers.as_slice()) {
            (_, [(a, _), (b, _), ..]) => return Err(RuleProblem::TwoMatchers(a, b)),
            (None, [(name, _)]) => return Err(RuleProblem::MatcherWithoutField(name)),
            (Some(_), []) => return Err(RuleProblem::FieldWithoutMatcher),
            (None, []) => None,
            (Some(field), [(name, value)]) => {
                let path = FieldPath::parse(field).map_err(|why| RuleProblem::BadField {
                    field: field.clone(),
                    why,
                })?;
                Some((path, Matcher::new(name, value)?))
            }
        };
        let response = match r.answer.as_str() {
            "refuse" => Response::Refuse(r.reason.clone()),
            "fail" => Response::Fail(r.reason.clone()),
            "never" => Response::Never,
            "succeed" => Response::Succeed(r.result.clone()),
            "" => return Err(RuleProblem::MissingAnswer),
            other => return Err(RuleProblem::UnknownAnswer(other.into())),
        };
        let with_reason = matches!(response, Response::Refuse(_) | Response::Fail(_));
        if r.reason.is_some() && !with_reason {
            return Err(RuleProblem::ReasonNotAllowed(r.answer.clone()));
        }
        if r.result.is_some() && !matches!(response, Response::Succeed(_)) {
            return Err(RuleProblem::ResultNotAllowed(r.answer.clone()));
        }
        if r.result.as_ref().is_some_and(|result| !result.is_object()) {
            return Err(RuleProblem::ResultNotAnObject);
        }
        let uses_value = r.reason.as_deref().is_some_and(|s| s.contains("{value}"));
        if uses_value && condition.is_none() {
            return Err(RuleProblem::ValueWithoutField);
        }
        Ok(Self {
            participant: r.participant.clone(),
            command: r.command.clone(),
            condition,
            response,
            until_repaired: r.until_repaired,
        })
    }
}

impl Matcher {
    fn new(name: &'static str, value: &Value) -> Result<Self, RuleProblem> {
        let number = || value.as_f64().ok_or(RuleProblem::NotANumber(name));
        Ok(match name {
            "starts_with" => Matcher::StartsWith(
                value
                    .as_str()
                    .ok_or(RuleProblem::NotAString(name))?
                    .to_owned(),
            ),
            "above" => Matcher::Above(number()?),
            "below" => Matcher::Below(number()?),
            _ => Matcher::Equals(value.clone()),
        })
    }

    fn test(&self, value: &Value) -> bool {
        match self {
            Matcher::StartsWith(prefix) => value.as_str().is_some_and(|s| s.starts_with(prefix)),
            // 3 and 3.0 are one number, whichever way the configuration and
            // the command happen to write it.
            Matcher::Equals(expected) => match (expected, value) {
                (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => a.as_f64() == b.as_f64(),
                },
                _ => expected == value,
            },
            Matcher::Above(bound) => value.as_f64().is_some_and(|n| n > *bound),
            Matcher::Below(bound) => value.as_f64().is_some_and(|n| n < *bound),
        }
    }
}

impl Response {
    fn answer(&self, command: &OutboxMessage, matched: Option<&Value>) -> Option<Answer> {
        let value = matched.map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let reason = |given: &Option<String>, default: String| match (given, &value) {
            (Some(given), Some(value)) => given.replace("{value}", value),
            (Some(given), None) => given.clone(),
            (None, Some(value)) => format!("{default}: {value}"),
            (None, None) => default,
        };
        let participant = &command.participant;
        let (outcome, result) = match self {
            Response::Never => return None,
            Response::Refuse(given) => {
                let reason = reason(given, format!("refused by the simulated {participant}"));
                (Outcome::Refused { reason }, None)
            }
            Response::Fail(given) => {
                let reason = reason(given, format!("simulated failure of {participant}"));
                (Outcome::Failed { reason }, None)
            }
            Response::Succeed(result) => (
                Outcome::Succeeded,
                result
                    .as_ref()
                    .map(|r| with_idempotency_key(r, &command.idempotency_key)),
            ),
        };
        Some(Answer { outcome, result })
    }
}

/// `value` with `{idempotency_key}` in its strings replaced by `key`.
fn with_idempotency_key(value: &Value, key: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{idempotency_key}", key)),
        Value::Array(items) => items.iter().map(|v| with_idempotency_key(v, key)).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), with_idempotency_key(v, key)))
            .collect(),
        other => other.clone(),
    }
}

/// The shipped rules, parsed once; a unit test checks that they parse.
fn shipped() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| parse_shipped(SHIPPED).expect("the shipped simulator rules are valid"))
}

#[derive(Debug, thiserror::Error)]
enum ShippedRulesError {
    #[error("the shipped simulator rules are not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Invalid(#[from] InvalidRule),
}

fn parse_shipped(text: &str) -> Result<Vec<Rule>, ShippedRulesError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        rules: Vec<SimulatorRule>,
    }
    let file: File = toml::from_str(text)?;
    Ok(compile("shipped rules", &file.rules)?)
}

impl SimulatorSettings {
    /// Checks every rule that would apply, as [`super::SimulatedParticipants::new`] does.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        Rules::new(self).map(drop)
    }
}
