//! Durable timers: each saga's next deadline is a column of its read-model row,
//! written in the step's transaction; this service polls for due ones and hands
//! each to a callback (the orchestrator turns it into a `Wake` input) — after a
//! restart too — for the partitions this node holds.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::{join_all, BoxFuture};
use sagaplane_sagas::SagaId;

use crate::clock::SharedClock;
use crate::input::{ActorError, Handled};
use crate::leases::Ownership;
use crate::metrics::Metrics;
use crate::ports::{StoreError, TimerStore};
use crate::task::detached;

const BATCH: i64 = 256;

/// What a due timer does: wake the saga `(id, type)`.
pub(crate) type WakeFn =
    Arc<dyn Fn(SagaId, String) -> BoxFuture<'static, Result<Handled, ActorError>> + Send + Sync>;

pub(crate) struct TimerService {
    store: Arc<dyn TimerStore>,
    clock: SharedClock,
    wake: WakeFn,
    metrics: Metrics,
    interval: Duration,
    ownership: Ownership,
    busy: bool,
}

impl TimerService {
    pub fn new(
        store: Arc<dyn TimerStore>,
        clock: SharedClock,
        wake: WakeFn,
        metrics: Metrics,
        interval: Duration,
        ownership: Ownership,
    ) -> Self {
        Self {
            store,
            clock,
            wake,
            metrics,
            interval,
            ownership,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let partitions = self.ownership.mask();
        if self.busy || partitions == 0 {
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let wake = self.wake.clone();
        let metrics = self.metrics.clone();
        let now = self.clock.now();
        let fut = async move {
            let due = store.due(now, BATCH, partitions).await?;
            let fired = due.len();
            metrics.timers_fired.inc_by(fired as u64);
            let wakes = due.into_iter().map(|timer| {
                let lag = (now - timer.wake_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                metrics.timer_lag_seconds.observe(lag.max(0.0));
                wake(timer.saga_id, timer.saga_type)
            });
            for result in join_all(wakes).await {
                if let Err(e) = result {
                    tracing::warn!(error.message = %e, "timer not handled");
                }
            }
            Ok::<_, StoreError>(fired)
        };
        ctx.spawn(detached(fut).into_actor(self).map(|result, act, _ctx| {
            act.busy = false;
            match result {
                Ok(0) => {}
                Ok(fired) => tracing::debug!(fired, "timers fired"),
                Err(e) => tracing::warn!(error.message = %e, "timer poll failed"),
            }
        }));
    }
}

impl Actor for TimerService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}
