//! Pure saga definitions: state machines with no I/O, no clock and no randomness.
//!
//! # Layout
//!
//! - [`saga`]: the vocabulary every saga speaks — the [`Saga`] trait, its inputs
//!   ([`Input`], [`Reply`]), what it asks the outside world to do ([`Command`]) and
//!   why it may refuse an input ([`Rejection`]).
//! - [`action`]: what an operator may ask a saga to do ([`Action`],
//!   [`ActionKind`]) and the one list of those actions' names ([`ActionName`]).
//! - [`order`]: the shipped order-fulfilment saga (reserve inventory → charge
//!   payment → confirm, compensated in reverse).
//!
//! The orchestrator passes the current time and every id in through the input, so
//! the same events always rebuild the same state.

pub mod action;
mod ids;
pub mod order;
pub mod saga;

pub use action::{Action, ActionKind, ActionName, Assume};
pub use ids::SagaId;
pub use saga::{
    Command, Explanation, FieldError, Input, Outcome, Policy, Rejection, Reply, RetryPolicy, Saga,
    Status, View, Waiting, WaitingOn,
};
