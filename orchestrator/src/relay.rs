//! Publishes committed outbox rows and sweeps up rows left unsent (after a
//! crash, or a transport failure). A row its transport does not take is tried
//! again with exponential back-off and jitter; past its budget (or refused for
//! good) it becomes a dead letter with the last error, for an operator.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sagaplane_sagas::RetryPolicy;
use serde_json::json;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::codec;
use crate::leases::Ownership;
use crate::messages::Publish;
use crate::metrics::Metrics;
use crate::ports::{
    DeadLetter, OutboxMessage, OutboxStore, PublishError, PublishFailure, Transport, TransportError,
};

const BATCH: usize = 256;
const SWEEP_LIMIT: i64 = 1_000;
/// Delivered rows are marked sent at most this often (unless a whole batch
/// waits): under light load each record then covers many commands, not one.
/// A row published but not yet marked when the process dies is published
/// again on recovery, as one published but not marked always was.
const SETTLE_EVERY: Duration = Duration::from_millis(50);

pub(crate) struct OutboxRelay {
    store: Arc<dyn OutboxStore>,
    clock: SharedClock,
    transport: Arc<dyn Transport>,
    metrics: Metrics,
    /// Set once the rows found unsent at start-up have been published.
    recovered: Arc<AtomicBool>,
    queue: VecDeque<OutboxMessage>,
    queued: HashSet<Uuid>,
    flushing: bool,
    /// Published, their outcome not yet recorded.
    published: Vec<OutboxMessage>,
    failed: Vec<(Uuid, TransportError)>,
    settling: bool,
    /// When the last record was started, and whether a later one is due.
    last_settled: Option<tokio::time::Instant>,
    settle_due: bool,
    /// Rows found unsent at start-up and not yet published; `None` until the
    /// start-up sweep has run.
    awaiting_recovery: Option<HashSet<Uuid>>,
    sweep_interval: Duration,
    /// Rows younger than this are left to the live path by the periodic sweep.
    grace: chrono::Duration,
    /// When this relay was made, before this process could commit anything:
    /// rows committed since come by the live path, so the start-up sweep
    /// leaves them to it.
    started_at: DateTime<Utc>,
    policy: RetryPolicy,
    ownership: Ownership,
}

impl OutboxRelay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn OutboxStore>,
        clock: SharedClock,
        transport: Arc<dyn Transport>,
        sweep_interval: Duration,
        policy: RetryPolicy,
        ownership: Ownership,
        metrics: Metrics,
        recovered: Arc<AtomicBool>,
    ) -> Self {
        let started_at = clock.now();
        Self {
            store,
            clock,
            transport,
            metrics,
            recovered,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            flushing: false,
            published: Vec::new(),
            failed: Vec::new(),
            settling: false,
            last_settled: None,
            settle_due: false,
            awaiting_recovery: None,
            sweep_interval,
            // Never shorter than a few mark delays: a row published but not
            // yet marked is not the sweep's to publish again.
            grace: chrono::Duration::from_std(sweep_interval.max(SETTLE_EVERY * 10))
                .unwrap_or(chrono::Duration::MAX),
            started_at,
            policy,
            ownership,
        }
    }

    fn enqueue(&mut self, messages: Vec<OutboxMessage>) {
        for m in messages {
            if self.queued.insert(m.message_id) {
                self.queue.push_back(m);
            }
        }
    }

    /// Publishes queued rows one batch at a time, in commit order. A batch's
    /// outcome is recorded while the next one is already being published: the
    /// bookkeeping write is not on the path of the next command.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            return;
        }
        self.flushing = true;
        let n = self.queue.len().min(BATCH);
        let batch: Vec<OutboxMessage> = self.queue.drain(..n).collect();
        let transport = self.transport.clone();
        let fut = async move {
            let failed = transport.publish(&batch).await.err();
            (batch, failed)
        };
        ctx.spawn(fut.into_actor(self).map(|(batch, failed), act, ctx| {
            act.flushing = false;
            act.published.extend(batch);
            if let Some(f) = failed {
                act.failed.extend(f.failed);
            }
            act.settle(ctx);
            act.flush(ctx);
        }));
    }

    /// Records what became of the batches published since the last record,
    /// all in one write; one record at a time, and sent marks at most every
    /// [`SETTLE_EVERY`], so that each covers many batches.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        if self.settling || self.published.is_empty() {
            return;
        }
        // Sent marks wait to be coalesced; failures (a retry to schedule, a
        // dead letter for an operator) and a full batch do not.
        // A retried row came from a sweep: marked late, a later sweep could
        // read it unsent and publish it again.
        let urgent = !self.failed.is_empty()
            || self.published.len() >= BATCH
            || self.published.iter().any(|m| m.publish_attempts > 0);
        if !urgent {
            if self.settle_due {
                return;
            }
            let since = self.last_settled.map(|t| t.elapsed());
            if let Some(wait) = since.and_then(|s| SETTLE_EVERY.checked_sub(s)) {
                self.settle_due = true;
                ctx.run_later(wait, |act, ctx| {
                    act.settle_due = false;
                    act.settle(ctx);
                });
                return;
            }
        }
        self.last_settled = Some(tokio::time::Instant::now());
        self.settling = true;
        let batch = std::mem::take(&mut self.published);
        let failed = std::mem::take(&mut self.failed);
        let failed = (!failed.is_empty()).then_some(PublishError { failed });
        let store = self.store.clone();
        let policy = self.policy;
        let clock = self.clock.clone();
        let fut = async move {
            let ids: Vec<Uuid> = batch.iter().map(|m| m.message_id).collect();
            let outcome = record_outcome(store.as_ref(), &batch, failed, policy, clock).await;
            (ids, outcome)
        };
        ctx.spawn(fut.into_actor(self).map(|(ids, outcome), act, ctx| {
            act.settling = false;
            for id in &ids {
                act.queued.remove(id);
            }
            // Every row was tried: start-up recovery counts it as handed over.
            if let Some(awaiting) = &mut act.awaiting_recovery {
                for id in &ids {
                    awaiting.remove(id);
                }
            }
            act.check_recovered();
            match outcome {
                Ok(settled) => {
                    let m = &act.metrics;
                    m.commands_published.inc_by(settled.sent as u64);
                    m.publish_failures.inc_by(settled.retried as u64);
                    m.commands_dead_lettered.inc_by(settled.dead as u64);
                    if let Some(at) = settled.next_retry {
                        let delay = (at - act.clock.now()).to_std().unwrap_or_default();
                        ctx.run_later(delay, |act, ctx| act.sweep(ctx, false));
                    }
                }
                Err(error) => {
                    // Nothing recorded: the rows stay as they were and a sweep finds them.
                    act.metrics.publish_failures.inc_by(ids.len() as u64);
                    tracing::warn!(
                        error,
                        count = ids.len(),
                        "outbox batch outcome not recorded"
                    );
                }
            }
            act.settle(ctx);
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
        if everything && !self.ownership.settled() {
            // Recovery sweeps the partitions this node holds: wait for the leases.
            ctx.run_later(Duration::from_millis(50), |act, ctx| act.sweep(ctx, true));
            return;
        }
        // The start-up sweep takes what was committed before this relay
        // started; a row committed since is on the live path already, and
        // taking it here too could publish it twice (the sweep may read it
        // unsent just before the live path marks it sent).
        let grace = if everything {
            (self.clock.now() - self.started_at).max(chrono::Duration::zero())
        } else {
            self.grace
        };
        let partitions = self.ownership.mask();
        let store = self.store.clone();
        let now = self.clock.now();
        let fut = async move {
            if partitions == 0 {
                return Ok(Vec::new());
            }
            store.unsent(now, grace, SWEEP_LIMIT, partitions).await
        };
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

/// What became of one published batch.
struct Settled {
    sent: usize,
    retried: usize,
    dead: usize,
    /// The earliest retry scheduled.
    next_retry: Option<DateTime<Utc>>,
}

/// Marks the delivered rows sent and records, for each one the transport did
/// not take, when to try again or that it is now a dead letter.
async fn record_outcome(
    store: &dyn OutboxStore,
    batch: &[OutboxMessage],
    failed: Option<PublishError>,
    policy: RetryPolicy,
    clock: SharedClock,
) -> Result<Settled, String> {
    let failed: Vec<(Uuid, TransportError)> = failed.map(|f| f.failed).unwrap_or_default();
    let is_failed = |id: &Uuid| failed.iter().any(|(f, _)| f == id);
    let sent: Vec<Uuid> = batch
        .iter()
        .map(|m| m.message_id)
        .filter(|id| !is_failed(id))
        .collect();
    if !sent.is_empty() {
        store.mark_sent(&sent).await.map_err(|e| e.to_string())?;
    }
    let now = clock.now();
    let mut settled = Settled {
        sent: sent.len(),
        retried: 0,
        dead: 0,
        next_retry: None,
    };
    let mut failures = Vec::with_capacity(failed.len());
    for (id, error) in failed {
        let Some(m) = batch.iter().find(|m| m.message_id == id) else {
            continue;
        };
        let attempts = m.publish_attempts + 1;
        if error.permanent || attempts >= policy.max_attempts {
            tracing::error!(message_id = %id, saga_id = %m.saga_id, step = %m.step, attempts, error = %error, "command dead-lettered");
            settled.dead += 1;
            failures.push(PublishFailure::DeadLetter {
                message_id: id,
                error: error.reason.clone(),
                letter: dead_letter(m, &error, attempts),
            });
        } else {
            let seed = id.as_u64_pair().1 ^ attempts as u64;
            let at = now + policy.backoff(attempts, seed);
            tracing::warn!(message_id = %id, attempts, retry_at = %at, error = %error, "command not published; will retry");
            settled.retried += 1;
            settled.next_retry = Some(settled.next_retry.map_or(at, |n| n.min(at)));
            failures.push(PublishFailure::Retry {
                message_id: id,
                error: error.reason,
                at,
            });
        }
    }
    if !failures.is_empty() {
        store
            .publish_failed(&failures)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(settled)
}

/// The command as it would have gone out, kept for operators.
fn dead_letter(m: &OutboxMessage, error: &TransportError, attempts: u32) -> DeadLetter {
    let event = codec::command_event(m, codec::COMMAND_SOURCE);
    DeadLetter {
        channel: format!("outbox:{}", m.participant),
        reason: format!("not delivered after {attempts} attempt(s): {error}"),
        raw: serde_json::to_vec(&event).expect("a command serialises"),
        headers: json!({
            "saga_id": m.saga_id,
            "step": m.step,
            "attempt": m.attempt,
            "command_type": m.command_type,
        }),
        outbox_message_id: Some(m.message_id),
    }
}
