//! What is appended to a defined saga's history, and how it is stored: a
//! step's success under the event name its definition gives it
//! (`InventoryReserved`), everything else under the engine's own names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::Definition;
use crate::{ActionKind, Policy};

/// One fact in a saga's history, with the time it was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    SagaStarted {
        input: Value,
        /// The definition the saga runs under to its end.
        definition: DefinitionRef,
        policy: Policy,
    },
    /// `step` succeeded; `event` is the name its definition gives that.
    StepSucceeded {
        event: String,
        step: String,
        result: Option<Value>,
    },
    /// An attempt of `step` failed; `then` is what the saga does about it.
    StepFailed {
        step: String,
        attempt: u32,
        cause: FailureCause,
        reason: String,
        then: Then,
    },
    /// A new attempt of the current step was sent (after its back-off, or
    /// because an operator asked).
    StepRetried { step: String, attempt: u32 },
    /// An operator intervened; the event after it is the intervention's effect.
    OperatorIntervened {
        action: ActionKind,
        operator: String,
        reason: String,
    },
    /// Stopped by an operator without compensation.
    SagaCancelled,
    /// An operator moved the saga to another version of its definition.
    SagaMigrated {
        from: DefinitionRef,
        to: DefinitionRef,
    },
    /// `step` succeeded after the saga compensated without it (its
    /// `late_reply` is `undo`): its `undo` runs.
    LateSuccess {
        step: String,
        attempt: u32,
        /// What its reply returned, for the undo's data to read.
        result: Option<Value>,
        undo: String,
    },
}

/// Which definition a saga runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionRef {
    pub saga_type: String,
    pub version: u32,
    /// Absent in histories written before definitions were versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl DefinitionRef {
    /// Names `definition`, hash included.
    pub fn of(definition: &Definition) -> Self {
        Self {
            saga_type: definition.saga_type.clone(),
            version: definition.version,
            hash: Some(definition.hash.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The participant refused for a business reason.
    Refused,
    /// The participant reported a transient error.
    Error,
    /// No reply before the step's deadline: the outcome is unknown.
    TimedOut,
    /// An operator declared the step failed or asked to compensate.
    Operator,
    /// The saga's overall deadline passed before it went forward to its end.
    DeadlineExceeded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Then {
    Retry {
        at: DateTime<Utc>,
    },
    /// Undo these steps, in this order.
    Compensate {
        plan: Vec<String>,
    },
    /// Out of budget (or past the pivot): an operator must act.
    Suspend,
}

impl EventKind {
    /// The name stored beside the event and shown in its history.
    pub fn name(&self) -> &str {
        match self {
            EventKind::SagaStarted { .. } => "SagaStarted",
            EventKind::StepSucceeded { event, .. } => event,
            EventKind::StepFailed { .. } => "StepFailed",
            EventKind::StepRetried { .. } => "StepRetried",
            EventKind::OperatorIntervened { .. } => "OperatorIntervened",
            EventKind::SagaCancelled => "SagaCancelled",
            EventKind::SagaMigrated { .. } => "SagaMigrated",
            EventKind::LateSuccess { .. } => "LateSuccess",
        }
    }
}

/// Every event but a success, as stored.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum Stored {
    SagaStarted {
        // Histories of the order saga from before definitions call it `order`.
        #[serde(alias = "order")]
        input: Value,
        #[serde(default = "order_v1")]
        definition: DefinitionRef,
        policy: Policy,
    },
    StepFailed {
        step: String,
        attempt: u32,
        cause: FailureCause,
        reason: String,
        then: Then,
    },
    StepRetried {
        step: String,
        attempt: u32,
    },
    OperatorIntervened {
        action: ActionKind,
        operator: String,
        reason: String,
    },
    SagaCancelled,
    SagaMigrated {
        from: DefinitionRef,
        to: DefinitionRef,
    },
    LateSuccess {
        step: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        undo: String,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredEvent {
    at: DateTime<Utc>,
    #[serde(flatten)]
    kind: Stored,
}

/// A success as stored: `{"type": "<event>", "step": …, "result": …}`.
#[derive(Serialize, Deserialize)]
struct StoredSuccess {
    at: DateTime<Utc>,
    #[serde(rename = "type")]
    event: String,
    // Absent in the order saga's histories from before definitions.
    #[serde(default)]
    step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

const ENGINE_EVENTS: [&str; 7] = [
    "SagaStarted",
    "StepFailed",
    "StepRetried",
    "OperatorIntervened",
    "SagaCancelled",
    "SagaMigrated",
    "LateSuccess",
];

/// The step of a success event written before definitions, when the order
/// saga's events named their step by their type alone.
fn legacy_step(event: &str) -> Option<&'static str> {
    Some(match event {
        "InventoryReserved" => "reserve-inventory",
        "PaymentCharged" => "charge-payment",
        "OrderConfirmed" => "confirm-order",
        "PaymentRefunded" => "refund-payment",
        "InventoryReleased" => "release-inventory",
        "OrderCancelled" => "cancel-order",
        _ => return None,
    })
}

fn order_v1() -> DefinitionRef {
    DefinitionRef {
        saga_type: "order".into(),
        version: 1,
        hash: None,
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let at = self.at;
        let kind = match self.kind.clone() {
            EventKind::StepSucceeded {
                event,
                step,
                result,
            } => {
                return StoredSuccess {
                    at,
                    event,
                    step: Some(step),
                    result,
                }
                .serialize(serializer)
            }
            EventKind::SagaStarted {
                input,
                definition,
                policy,
            } => Stored::SagaStarted {
                input,
                definition,
                policy,
            },
            EventKind::StepFailed {
                step,
                attempt,
                cause,
                reason,
                then,
            } => Stored::StepFailed {
                step,
                attempt,
                cause,
                reason,
                then,
            },
            EventKind::StepRetried { step, attempt } => Stored::StepRetried { step, attempt },
            EventKind::OperatorIntervened {
                action,
                operator,
                reason,
            } => Stored::OperatorIntervened {
                action,
                operator,
                reason,
            },
            EventKind::SagaCancelled => Stored::SagaCancelled,
            EventKind::SagaMigrated { from, to } => Stored::SagaMigrated { from, to },
            EventKind::LateSuccess {
                step,
                attempt,
                result,
                undo,
            } => Stored::LateSuccess {
                step,
                attempt,
                result,
                undo,
            },
        };
        StoredEvent { at, kind }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let name = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !ENGINE_EVENTS.contains(&name) {
            let s: StoredSuccess = serde_json::from_value(value).map_err(D::Error::custom)?;
            let step = match s.step {
                Some(step) => step,
                None => legacy_step(&s.event)
                    .ok_or_else(|| D::Error::custom(format!("unknown event type `{}`", s.event)))?
                    .to_owned(),
            };
            return Ok(Event {
                at: s.at,
                kind: EventKind::StepSucceeded {
                    event: s.event,
                    step,
                    result: s.result,
                },
            });
        }
        let s: StoredEvent = serde_json::from_value(value).map_err(D::Error::custom)?;
        let kind = match s.kind {
            Stored::SagaStarted {
                input,
                definition,
                policy,
            } => EventKind::SagaStarted {
                input,
                definition,
                policy,
            },
            Stored::StepFailed {
                step,
                attempt,
                cause,
                reason,
                then,
            } => EventKind::StepFailed {
                step,
                attempt,
                cause,
                reason,
                then,
            },
            Stored::StepRetried { step, attempt } => EventKind::StepRetried { step, attempt },
            Stored::OperatorIntervened {
                action,
                operator,
                reason,
            } => EventKind::OperatorIntervened {
                action,
                operator,
                reason,
            },
            Stored::SagaCancelled => EventKind::SagaCancelled,
            Stored::SagaMigrated { from, to } => EventKind::SagaMigrated { from, to },
            Stored::LateSuccess {
                step,
                attempt,
                result,
                undo,
            } => EventKind::LateSuccess {
                step,
                attempt,
                result,
                undo,
            },
        };
        Ok(Event { at: s.at, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::ENGINE_EVENTS;
    use crate::definition::RESERVED_EVENTS;

    #[test]
    fn no_step_may_name_its_success_like_an_engine_event() {
        for name in ENGINE_EVENTS {
            assert!(RESERVED_EVENTS.contains(&name), "{name}");
        }
    }
}
