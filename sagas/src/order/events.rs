//! What is appended to an order saga's history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::OrderInput;
use super::steps::Step;
use crate::{ActionKind, Policy};

/// One fact in an order saga's history, with the time it was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    SagaStarted {
        order: OrderInput,
        policy: Policy,
    },
    InventoryReserved,
    PaymentCharged,
    OrderConfirmed,
    PaymentRefunded,
    InventoryReleased,
    OrderCancelled,
    /// An attempt of `step` failed; `then` is what the saga does about it.
    StepFailed {
        step: Step,
        attempt: u32,
        cause: FailureCause,
        reason: String,
        then: Then,
    },
    /// A new attempt of the current step was sent (after its back-off, or
    /// because an operator asked).
    StepRetried {
        step: Step,
        attempt: u32,
    },
    /// An operator intervened; the event after it is the intervention's effect.
    OperatorIntervened {
        action: ActionKind,
        operator: String,
        reason: String,
    },
    /// Stopped by an operator without compensation.
    SagaCancelled,
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
        plan: Vec<Step>,
    },
    /// Out of budget while compensating: an operator must act.
    Suspend,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SagaStarted { .. } => "SagaStarted",
            EventKind::InventoryReserved => "InventoryReserved",
            EventKind::PaymentCharged => "PaymentCharged",
            EventKind::OrderConfirmed => "OrderConfirmed",
            EventKind::PaymentRefunded => "PaymentRefunded",
            EventKind::InventoryReleased => "InventoryReleased",
            EventKind::OrderCancelled => "OrderCancelled",
            EventKind::StepFailed { .. } => "StepFailed",
            EventKind::StepRetried { .. } => "StepRetried",
            EventKind::OperatorIntervened { .. } => "OperatorIntervened",
            EventKind::SagaCancelled => "SagaCancelled",
        }
    }

    /// The event recording that `step` succeeded.
    pub fn succeeded(step: Step) -> EventKind {
        match step {
            Step::ReserveInventory => EventKind::InventoryReserved,
            Step::ChargePayment => EventKind::PaymentCharged,
            Step::ConfirmOrder => EventKind::OrderConfirmed,
            Step::RefundPayment => EventKind::PaymentRefunded,
            Step::ReleaseInventory => EventKind::InventoryReleased,
            Step::CancelOrder => EventKind::OrderCancelled,
        }
    }

    /// The step this event records as succeeded, if it is a success.
    pub fn succeeded_step(&self) -> Option<Step> {
        match self {
            EventKind::InventoryReserved => Some(Step::ReserveInventory),
            EventKind::PaymentCharged => Some(Step::ChargePayment),
            EventKind::OrderConfirmed => Some(Step::ConfirmOrder),
            EventKind::PaymentRefunded => Some(Step::RefundPayment),
            EventKind::InventoryReleased => Some(Step::ReleaseInventory),
            EventKind::OrderCancelled => Some(Step::CancelOrder),
            _ => None,
        }
    }
}
