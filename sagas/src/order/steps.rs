//! The six steps of the order saga and the commands they send.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::input::OrderInput;
use crate::{Command, SagaId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    ReserveInventory,
    ChargePayment,
    ConfirmOrder,
    RefundPayment,
    ReleaseInventory,
    CancelOrder,
}

impl Step {
    /// The forward steps, in the order they run.
    pub const FORWARD: [Step; 3] = [
        Step::ReserveInventory,
        Step::ChargePayment,
        Step::ConfirmOrder,
    ];
    pub const ALL: [Step; 6] = [
        Step::ReserveInventory,
        Step::ChargePayment,
        Step::ConfirmOrder,
        Step::RefundPayment,
        Step::ReleaseInventory,
        Step::CancelOrder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::ReserveInventory => "reserve-inventory",
            Step::ChargePayment => "charge-payment",
            Step::ConfirmOrder => "confirm-order",
            Step::RefundPayment => "refund-payment",
            Step::ReleaseInventory => "release-inventory",
            Step::CancelOrder => "cancel-order",
        }
    }

    pub fn parse(name: &str) -> Option<Step> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn is_forward(self) -> bool {
        Self::FORWARD.contains(&self)
    }

    /// The forward step after this one, if any.
    pub fn next_forward(self) -> Option<Step> {
        let i = Self::FORWARD.iter().position(|s| *s == self)?;
        Self::FORWARD.get(i + 1).copied()
    }

    /// The compensation that undoes this forward step. Confirmation has none of its
    /// own: cancelling the order, which every compensation ends with, undoes it.
    pub fn undo(self) -> Option<Step> {
        match self {
            Step::ReserveInventory => Some(Step::ReleaseInventory),
            Step::ChargePayment => Some(Step::RefundPayment),
            _ => None,
        }
    }

    pub fn participant(self) -> &'static str {
        match self {
            Step::ReserveInventory | Step::ReleaseInventory => "inventory",
            Step::ChargePayment | Step::RefundPayment => "payment",
            Step::ConfirmOrder | Step::CancelOrder => "order",
        }
    }

    pub fn command_type(self) -> &'static str {
        match self {
            Step::ReserveInventory => "order.inventory.reserve.v1",
            Step::ReleaseInventory => "order.inventory.release.v1",
            Step::ChargePayment => "order.payment.charge.v1",
            Step::RefundPayment => "order.payment.refund.v1",
            Step::ConfirmOrder => "order.order.confirm.v1",
            Step::CancelOrder => "order.order.cancel.v1",
        }
    }

    /// The command for one attempt of this step.
    pub fn command(self, saga: SagaId, attempt: u32, order: &OrderInput) -> Command {
        let data = match self {
            Step::ReserveInventory | Step::ReleaseInventory => json!({
                "order_id": order.order_id,
                "items": order.items,
            }),
            Step::ChargePayment | Step::RefundPayment => json!({
                "order_id": order.order_id,
                "customer_id": order.customer_id,
                "amount_cents": order.amount_cents,
                "currency": order.currency,
            }),
            Step::ConfirmOrder | Step::CancelOrder => json!({
                "order_id": order.order_id,
                "customer_id": order.customer_id,
            }),
        };
        Command {
            step: self.name(),
            command_type: self.command_type(),
            participant: self.participant(),
            attempt,
            idempotency_key: format!("{saga}:{}", self.name()),
            data,
        }
    }
}
