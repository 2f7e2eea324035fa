//! The stored shape of the hand-written order saga's events, frozen as that
//! code (`sagas/src/order/events.rs`, `input.rs`, `steps.rs` and the
//! `Policy` of `saga.rs` before definitions) declared it: the histories in
//! the database were written through exactly these derives.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ActionKind;

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
    StepFailed {
        step: Step,
        attempt: u32,
        cause: FailureCause,
        reason: String,
        then: Then,
    },
    StepRetried {
        step: Step,
        attempt: u32,
    },
    OperatorIntervened {
        action: ActionKind,
        operator: String,
        reason: String,
    },
    SagaCancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    ReserveInventory,
    ChargePayment,
    ConfirmOrder,
    RefundPayment,
    ReleaseInventory,
    CancelOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    Refused,
    Error,
    TimedOut,
    Operator,
    DeadlineExceeded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Then {
    Retry { at: DateTime<Utc> },
    Compensate { plan: Vec<Step> },
    Suspend,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<LineItem>,
    pub amount_cents: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    pub sku: String,
    pub qty: i64,
}

/// Without `jitter`: every back-off was jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub step_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_timeouts_ms: BTreeMap<String, u64>,
    pub forward: RetryPolicy,
    pub compensation: RetryPolicy,
    #[serde(default)]
    pub saga_deadline_ms: u64,
}
