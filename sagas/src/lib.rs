//! Pure saga definitions: state machines with no I/O, no clock and no randomness.
//!
//! # Layout
//!
//! - [`saga`]: the vocabulary every saga speaks — the [`Saga`] trait, its inputs
//!   ([`Input`], [`Reply`]), what it asks the outside world to do ([`Command`]) and
//!   why it may refuse an input ([`Rejection`]).
//! - [`action`]: what an operator may ask a saga to do ([`Action`],
//!   [`ActionKind`]) and the one list of those actions' names ([`ActionName`]).
//! - [`definition`]: saga types as data — the definition file format, its
//!   checks, and the [`Catalog`](definition::Catalog) of loaded versions; the
//!   shipped `order` and `return` definitions.
//! - [`engine`]: [`DefinedSaga`], the one [`Saga`] that runs any definition.
//!
//! The orchestrator passes the current time and every id in through the input, so
//! the same events always rebuild the same state.

pub mod action;
pub mod definition;
pub mod engine;
mod ids;
pub mod saga;

pub use action::{Action, ActionKind, ActionName, Assume};
pub use definition::{Catalog, Definition};
pub use engine::DefinedSaga;
pub use ids::SagaId;
pub use saga::{
    Command, Explanation, FieldError, Input, Outcome, Policy, Rejection, Reply, RetryPolicy, Saga,
    Status, View, Waiting, WaitingOn,
};
