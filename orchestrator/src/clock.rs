//! The orchestrator's clock, at PostgreSQL's precision (microseconds), so that
//! a time in an event and the same time in a read-model column are equal.
//!
//! Every time the core records or schedules by (inputs, events, outbox rows,
//! retries, sweeps, timer polls) comes from the [`Clock`] it was given, and its
//! intervals (crash window, lease staleness) from tokio's clock, so tests can
//! run on tokio's paused clock ([`TokioClock`]) and advance hours of timeouts
//! and back-offs in milliseconds. A reply, too, is taken at the clock's time
//! when it reaches its saga: a participant's own `time` decides nothing.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// Where the core reads the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, cut to whole microseconds.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by every part of one orchestrator.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        now()
    }
}

/// Wall-clock time that moves with tokio's clock: it starts at the wall time
/// of its creation and advances as `tokio::time::Instant` does, so with time
/// paused (`tokio::time::pause`) it stands still until the test advances it,
/// and every timer the core arms agrees with every time it records.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            origin: now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = TimeDelta::from_std(self.start.elapsed()).unwrap_or(TimeDelta::MAX);
        micros(self.origin + elapsed)
    }
}

/// The wall clock's now, cut to whole microseconds.
pub fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

/// `t` cut to whole microseconds.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
