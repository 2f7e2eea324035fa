//! Retention: the owner of a partition deletes its sagas that finished long
//! enough ago, a small batch at a time, so the store stops growing and the
//! sagas still running never wait long behind the deletes.

use std::sync::Arc;

use actix::prelude::*;

use crate::clock::SharedClock;
use crate::config::Retention;
use crate::leases::Ownership;
use crate::metrics::Metrics;
use crate::ports::TimerStore;
use crate::task::detached;

pub(crate) struct RetentionService {
    store: Arc<dyn TimerStore>,
    clock: SharedClock,
    retention: Retention,
    metrics: Metrics,
    ownership: Ownership,
    busy: bool,
}

impl RetentionService {
    pub fn new(
        store: Arc<dyn TimerStore>,
        clock: SharedClock,
        retention: Retention,
        metrics: Metrics,
        ownership: Ownership,
    ) -> Self {
        Self {
            store,
            clock,
            retention,
            metrics,
            ownership,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let partitions = self.ownership.mask();
        // An age reaching back before the calendar's start deletes nothing.
        let ended_before = chrono::Duration::from_std(self.retention.finished_for)
            .ok()
            .and_then(|age| self.clock.now().checked_sub_signed(age));
        let Some(ended_before) = ended_before else {
            return;
        };
        if self.busy || partitions == 0 {
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let batch = i64::from(self.retention.batch.max(1));
        let fut = async move {
            let deleted = store
                .purge_finished(ended_before, batch, partitions)
                .await?;
            metrics.retention_deleted.inc_by(deleted);
            Ok::<_, crate::ports::StoreError>(deleted)
        };
        ctx.spawn(detached(fut).into_actor(self).map(|result, act, _ctx| {
            act.busy = false;
            match result {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "finished sagas deleted"),
                Err(e) => tracing::warn!(error.message = %e, "deleting finished sagas failed"),
            }
        }));
    }
}

impl Actor for RetentionService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.retention.interval, |act, ctx| act.tick(ctx));
    }
}
