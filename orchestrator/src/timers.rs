//! Durable timers: each saga's next deadline is a column of its read-model row,
//! written in the step's transaction; this service polls for due ones and turns
//! them into `Wake` inputs — after a restart too — for the partitions this
//! node holds.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use futures_util::future::join_all;

use crate::handle::Orchestrator;
use crate::leases::Ownership;
use crate::ports::EventStore;

const BATCH: i64 = 256;

pub(crate) struct TimerService {
    store: Arc<dyn EventStore>,
    orchestrator: Orchestrator,
    interval: Duration,
    ownership: Ownership,
    busy: bool,
}

impl TimerService {
    pub fn new(
        store: Arc<dyn EventStore>,
        orchestrator: Orchestrator,
        interval: Duration,
        ownership: Ownership,
    ) -> Self {
        Self {
            store,
            orchestrator,
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
        let orchestrator = self.orchestrator.clone();
        let metrics = self.orchestrator.metrics().clone();
        let fut = async move {
            let now = Utc::now();
            let due = store.due(now, BATCH, partitions).await?;
            let fired = due.len();
            metrics.timers_fired.inc_by(fired as u64);
            let wakes = due.into_iter().map(|timer| {
                let lag = (now - timer.wake_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                metrics.timer_lag_seconds.observe(lag.max(0.0));
                orchestrator.wake(timer.saga_id, timer.saga_type)
            });
            for result in join_all(wakes).await {
                if let Err(e) = result {
                    tracing::warn!(error.message = %e, "timer not handled");
                }
            }
            Ok::<_, crate::ports::StoreError>(fired)
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, _ctx| {
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
