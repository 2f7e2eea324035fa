//! The orchestrator's clock, at PostgreSQL's precision (microseconds), so that
//! a time in an event and the same time in a read-model column are equal.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

pub fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

/// `t` cut to whole microseconds.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
