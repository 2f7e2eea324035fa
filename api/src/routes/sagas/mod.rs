//! `/v1/sagas`: start a saga, find sagas, read one and its history.
//!
//! `dto` (how a saga is shown and named) is below the three verbs: `start`,
//! `search` and `read`.

mod dto;
pub(crate) mod read;
pub(crate) mod search;
pub(crate) mod start;

pub(crate) use dto::{etag, parse_id, SagaDto};
pub(crate) use read::detailed;
pub(crate) use search::MAX_PAGE;
