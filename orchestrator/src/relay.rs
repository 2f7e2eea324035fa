//! Publishes committed outbox rows and sweeps up rows left unsent (after a
//! crash, or a transport failure).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::ports::{EventStore, OutboxMessage, Transport};

const BATCH: usize = 256;
const SWEEP_LIMIT: i64 = 1_000;

/// Newly committed outbox rows to publish.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish(pub Vec<OutboxMessage>);

pub(crate) struct OutboxRelay {
    store: Arc<dyn EventStore>,
    transport: Arc<dyn Transport>,
    metrics: Metrics,
    /// Set once the rows found unsent at start-up have been published.
    recovered: Arc<AtomicBool>,
    queue: VecDeque<OutboxMessage>,
    queued: HashSet<Uuid>,
    flushing: bool,
    /// Rows found unsent at start-up and not yet published; `None` until the
    /// start-up sweep has run.
    awaiting_recovery: Option<HashSet<Uuid>>,
    sweep_interval: Duration,
    /// Rows younger than this are left to the live path by the periodic sweep.
    grace: chrono::Duration,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<dyn EventStore>,
        transport: Arc<dyn Transport>,
        sweep_interval: Duration,
        metrics: Metrics,
        recovered: Arc<AtomicBool>,
    ) -> Self {
        Self {
            store,
            transport,
            metrics,
            recovered,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            flushing: false,
            awaiting_recovery: None,
            sweep_interval,
            grace: chrono::Duration::from_std(sweep_interval).unwrap_or(chrono::Duration::MAX),
        }
    }

    fn enqueue(&mut self, messages: Vec<OutboxMessage>) {
        for m in messages {
            if self.queued.insert(m.message_id) {
                self.queue.push_back(m);
            }
        }
    }

    /// Publishes queued rows one batch at a time, in commit order.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            return;
        }
        self.flushing = true;
        let n = self.queue.len().min(BATCH);
        let batch: Vec<OutboxMessage> = self.queue.drain(..n).collect();
        let store = self.store.clone();
        let transport = self.transport.clone();
        let fut = async move {
            let ids: Vec<Uuid> = batch.iter().map(|m| m.message_id).collect();
            let result = match transport.publish(&batch).await {
                Ok(()) => store.mark_sent(&ids).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (ids, result)
        };
        ctx.spawn(fut.into_actor(self).map(|(ids, result), act, ctx| {
            act.flushing = false;
            for id in &ids {
                act.queued.remove(id);
            }
            match result {
                Ok(()) => {
                    act.metrics.commands_published.inc_by(ids.len() as u64);
                    if let Some(awaiting) = &mut act.awaiting_recovery {
                        for id in &ids {
                            awaiting.remove(id);
                        }
                    }
                    act.check_recovered();
                }
                Err(error) => {
                    // The rows stay unsent in the store; the sweep publishes them again.
                    act.metrics.publish_failures.inc_by(ids.len() as u64);
                    tracing::warn!(error, count = ids.len(), "outbox batch not published");
                }
            }
            act.flush(ctx);
        }));
    }

    /// Start-up recovery is finished once every row found unsent then is published.
    fn check_recovered(&self) {
        if self
            .awaiting_recovery
            .as_ref()
            .is_some_and(HashSet::is_empty)
        {
            self.recovered.store(true, Ordering::Release);
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>, everything: bool) {
        let before = if everything {
            Utc::now()
        } else {
            Utc::now() - self.grace
        };
        let store = self.store.clone();
        let fut = async move { store.unsent(before, SWEEP_LIMIT).await };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(rows) => {
                        if !rows.is_empty() {
                            tracing::info!(count = rows.len(), "unsent outbox rows found");
                        }
                        if everything {
                            act.awaiting_recovery =
                                Some(rows.iter().map(|m| m.message_id).collect());
                            act.check_recovered();
                        }
                        act.enqueue(rows);
                        act.flush(ctx);
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "outbox sweep failed");
                        if everything {
                            // Recovery is not finished until this sweep succeeds.
                            let retry = Duration::from_secs(1);
                            ctx.run_later(retry, |act, ctx| act.sweep(ctx, true));
                        }
                    }
                }),
        );
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Recovery: whatever was committed but not sent before a restart goes now.
        self.sweep(ctx, true);
        ctx.run_interval(self.sweep_interval, |act, ctx| act.sweep(ctx, false));
    }
}

impl Handler<Publish> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        self.enqueue(msg.0);
        self.flush(ctx);
    }
}
