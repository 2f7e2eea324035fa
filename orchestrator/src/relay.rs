//! Publishes committed commands and sweeps up those left unsent (after a
//! crash, or a transport failure). A command its transport does not take gets
//! an outbox row and is tried again with exponential back-off and jitter; past
//! its budget (or refused for good) it becomes a dead letter with the last
//! error, for an operator.
//!
//! A command committed by this process is kept on its step's event and is
//! published from memory; the relay records no sent mark for it, only a
//! watermark per process (see [`Positions`]). Outbox rows (failures, and the
//! commands of relays gone) are marked sent one by one.

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
use crate::messages::{NotCommitted, Publish};
use crate::metrics::Metrics;
use crate::ports::{
    DeadLetter, OutboxMessage, OutboxStore, PublishFailure, StoreError, Transport, TransportError,
};
use crate::positions::Positions;
use crate::task::detached;

const BATCH: usize = 256;
const SWEEP_LIMIT: i64 = 1_000;
/// The watermark is written at most this often: under light load each write
/// covers many commands, not one. Commands published above the last watermark
/// written when the process dies are published again on recovery.
const SETTLE_EVERY: Duration = Duration::from_millis(50);
/// After a failed write, the wait before it is tried again.
const RECORD_RETRY: Duration = Duration::from_secs(1);

/// A command on its way: kept on its step's event (`position`), or read from
/// the outbox (`None`).
struct Queued {
    message: OutboxMessage,
    position: Option<u64>,
}

pub(crate) struct OutboxRelay {
    store: Arc<dyn OutboxStore>,
    clock: SharedClock,
    transport: Arc<dyn Transport>,
    metrics: Metrics,
    /// Set once the commands found unsent at start-up have been published.
    recovered: Arc<AtomicBool>,
    positions: Arc<Positions>,
    node: String,
    /// A relay not seen for this long is gone: another takes over its commands.
    dead_after: Duration,
    queue: VecDeque<Queued>,
    queued: HashSet<Uuid>,
    flushing: bool,
    /// Outbox rows published, not yet marked sent.
    delivered: Vec<Uuid>,
    /// Not taken by their transport, their failure not yet recorded.
    failed: Vec<(Queued, TransportError)>,
    /// Steps whose commit failed: copied into the outbox if they were written.
    unsure: Vec<u64>,
    recording: bool,
    /// The watermark last written, and whether a write is under way or due.
    written: Option<u64>,
    advancing: bool,
    advance_due: bool,
    /// The next watermark write is due even if it is unchanged (to be seen).
    touch: bool,
    last_advanced: Option<tokio::time::Instant>,
    /// Rows found unsent at start-up and not yet published; `None` until the
    /// start-up sweep has run.
    awaiting_recovery: Option<HashSet<Uuid>>,
    /// A sweep is reading the outbox; one more is due after it (`Some`, and
    /// whether it is the start-up sweep).
    sweeping: bool,
    sweep_again: Option<bool>,
    /// Rows let go of while a sweep was reading: what it answers about them
    /// may predate their sent mark, so they are left to the next sweep.
    let_go_while_sweeping: HashSet<Uuid>,
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

/// How the relay is set up.
pub(crate) struct RelaySetup {
    pub node: String,
    pub sweep_interval: Duration,
    pub lease_ttl: Duration,
    pub policy: RetryPolicy,
}

impl OutboxRelay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn OutboxStore>,
        clock: SharedClock,
        transport: Arc<dyn Transport>,
        setup: RelaySetup,
        positions: Arc<Positions>,
        ownership: Ownership,
        metrics: Metrics,
        recovered: Arc<AtomicBool>,
    ) -> Self {
        let started_at = clock.now();
        let RelaySetup {
            node,
            sweep_interval,
            lease_ttl,
            policy,
        } = setup;
        Self {
            store,
            clock,
            transport,
            metrics,
            recovered,
            positions,
            node,
            // It is seen at every sweep: three missed, and its leases gone.
            dead_after: lease_ttl.max(sweep_interval * 3),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            flushing: false,
            delivered: Vec::new(),
            failed: Vec::new(),
            unsure: Vec::new(),
            recording: false,
            written: None,
            advancing: false,
            advance_due: false,
            touch: false,
            last_advanced: None,
            awaiting_recovery: None,
            sweeping: false,
            sweep_again: None,
            let_go_while_sweeping: HashSet::new(),
            sweep_interval,
            grace: chrono::Duration::from_std(sweep_interval.max(SETTLE_EVERY * 10))
                .unwrap_or(chrono::Duration::MAX),
            started_at,
            policy,
            ownership,
        }
    }

    fn enqueue(&mut self, messages: Vec<OutboxMessage>, position: Option<u64>) {
        for message in messages {
            if self.queued.insert(message.message_id) {
                self.queue.push_back(Queued { message, position });
            }
        }
    }

    /// No longer on its way: a later sweep may queue it again.
    fn let_go(&mut self, id: &Uuid) {
        self.queued.remove(id);
        if self.sweeping {
            self.let_go_while_sweeping.insert(*id);
        }
    }

    /// Publishes queued commands one batch at a time, in commit order. What
    /// became of a batch is recorded while the next one is already being
    /// published: the bookkeeping write is not on the path of the next command.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            return;
        }
        self.flushing = true;
        let n = self.queue.len().min(BATCH);
        let (messages, positions): (Vec<OutboxMessage>, Vec<Option<u64>>) = self
            .queue
            .drain(..n)
            .map(|q| (q.message, q.position))
            .unzip();
        let transport = self.transport.clone();
        let fut = async move {
            let failed = transport.publish(&messages).await.err();
            (messages, failed)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(messages, failed), act, ctx| {
                    act.flushing = false;
                    let mut failed: Vec<(Uuid, TransportError)> =
                        failed.map(|f| f.failed).unwrap_or_default();
                    let mut sent = 0;
                    for (message, position) in messages.into_iter().zip(positions) {
                        let queued = Queued { message, position };
                        let id = queued.message.message_id;
                        if let Some(i) = failed.iter().position(|(f, _)| *f == id) {
                            let (_, error) = failed.swap_remove(i);
                            act.failed.push((queued, error));
                            continue;
                        }
                        sent += 1;
                        match queued.position {
                            // Kept on its event: the watermark passes it once written.
                            Some(position) => {
                                act.queued.remove(&id);
                                act.positions.release_one(position);
                            }
                            None => act.delivered.push(id),
                        }
                    }
                    act.metrics.commands_published.inc_by(sent);
                    act.record(ctx);
                    act.advance(ctx);
                    act.flush(ctx);
                }),
        );
    }

    /// Records, in one go, the outbox rows delivered (sent marks), the failures
    /// (a retry time, or a dead letter) and the steps whose commit failed.
    /// None of these is on the live path of a command, so none waits.
    fn record(&mut self, ctx: &mut Context<Self>) {
        if self.recording
            || (self.delivered.is_empty() && self.failed.is_empty() && self.unsure.is_empty())
        {
            return;
        }
        self.recording = true;
        let delivered = std::mem::take(&mut self.delivered);
        let failed = std::mem::take(&mut self.failed);
        let unsure = std::mem::take(&mut self.unsure);
        let store = self.store.clone();
        let (policy, now) = (self.policy, self.clock.now());
        let fut = async move {
            let marked = match delivered.is_empty() {
                true => Ok(()),
                false => store.mark_sent(&delivered).await,
            };
            let failures: Vec<PublishFailure> = failed
                .iter()
                .map(|(q, error)| failure(&q.message, error, policy, now))
                .collect();
            let recorded = match failures.is_empty() {
                true => Ok(()),
                false => store.publish_failed(&failures).await,
            };
            let recovered = match unsure.is_empty() {
                true => Ok(()),
                false => store.recover_positions(&unsure).await,
            };
            let outcome = Recorded {
                delivered,
                failed,
                failures,
                unsure,
            };
            (outcome, marked, recorded, recovered)
        };
        ctx.spawn(detached(fut).into_actor(self).map(
            |(outcome, marked, recorded, recovered), act, ctx| {
                act.recording = false;
                act.recorded(ctx, outcome, marked, recorded, recovered);
                act.record(ctx);
                act.advance(ctx);
            },
        ));
    }

    fn recorded(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Recorded,
        marked: Result<(), StoreError>,
        recorded: Result<(), StoreError>,
        recovered: Result<(), StoreError>,
    ) {
        let Recorded {
            delivered,
            failed,
            failures,
            unsure,
        } = outcome;
        if let Err(e) = marked {
            // The rows stay unsent; a sweep publishes them again.
            tracing::warn!(error.message = %e, count = delivered.len(), "sent marks not written");
        }
        for id in &delivered {
            self.let_go(id);
        }
        match recorded {
            Ok(()) => {
                let mut next_retry: Option<DateTime<Utc>> = None;
                for f in &failures {
                    match f {
                        PublishFailure::Retry { at, .. } => {
                            self.metrics.publish_failures.inc();
                            next_retry = Some(next_retry.map_or(*at, |n| n.min(*at)));
                        }
                        PublishFailure::DeadLetter { .. } => {
                            self.metrics.commands_dead_lettered.inc();
                        }
                    }
                }
                for (q, _) in &failed {
                    self.let_go(&q.message.message_id);
                    if let Some(position) = q.position {
                        // In the outbox now: the sweep retries it.
                        self.positions.release_one(position);
                    }
                }
                if let Some(at) = next_retry {
                    let delay = (at - self.clock.now()).to_std().unwrap_or_default();
                    ctx.run_later(delay, |act, ctx| act.sweep(ctx, false));
                }
            }
            Err(e) => {
                self.metrics.publish_failures.inc_by(failed.len() as u64);
                tracing::warn!(error.message = %e, count = failed.len(), "publish failures not recorded");
                // Outbox rows stay as they were, and a sweep finds them; a
                // command kept on its event is published again in a while.
                let mut again = Vec::new();
                for (q, _) in failed {
                    match q.position {
                        Some(_) => again.push(q),
                        None => self.let_go(&q.message.message_id),
                    }
                }
                if !again.is_empty() {
                    ctx.run_later(RECORD_RETRY, move |act, ctx| {
                        act.queue.extend(again);
                        act.flush(ctx);
                    });
                }
            }
        }
        match recovered {
            Ok(()) => unsure.iter().for_each(|p| self.positions.release(*p)),
            Err(e) => {
                tracing::warn!(error.message = %e, "commands of failed commits not recovered");
                ctx.run_later(RECORD_RETRY, move |act, ctx| {
                    act.unsure.extend(unsure);
                    act.record(ctx);
                });
            }
        }
        // Every row was tried: start-up recovery counts it as handed over.
        if let Some(awaiting) = &mut self.awaiting_recovery {
            for id in &delivered {
                awaiting.remove(id);
            }
            for f in &failures {
                awaiting.remove(&f.message().message_id);
            }
        }
        self.check_recovered();
    }

    /// Writes the watermark when it has moved (or the relay is due to be
    /// seen), at most every [`SETTLE_EVERY`], one write at a time.
    fn advance(&mut self, ctx: &mut Context<Self>) {
        if self.advancing || self.advance_due {
            return;
        }
        let (Some(epoch), Some(below)) = (self.positions.epoch(), self.positions.watermark())
        else {
            return;
        };
        if self.written == Some(below) && !self.touch {
            return;
        }
        let since = self.last_advanced.map(|t| t.elapsed());
        if let Some(wait) = since.and_then(|s| SETTLE_EVERY.checked_sub(s)) {
            self.advance_due = true;
            ctx.run_later(wait, |act, ctx| {
                act.advance_due = false;
                act.advance(ctx);
            });
            return;
        }
        self.last_advanced = Some(tokio::time::Instant::now());
        self.advancing = true;
        self.touch = false;
        let store = self.store.clone();
        let node = self.node.clone();
        let suspended = self.positions.suspensions();
        let fut = async move { store.relay_published(epoch, &node, below).await };
        ctx.spawn(detached(fut).into_actor(self).map(move |result, act, ctx| {
            act.advancing = false;
            match result {
                Ok(()) => {
                    act.written = Some(below);
                    // Recorded since the relay was found taken over: steps go on.
                    act.positions.resume(suspended);
                    act.advance(ctx);
                }
                // Tried again at the next change, or the next sweep.
                Err(e) => tracing::warn!(error.message = %e, "relay watermark not written"),
            }
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

    /// Gets this relay its epoch; nothing with commands commits before.
    fn open(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let node = self.node.clone();
        let fut = async move { store.open_relay(&node).await };
        ctx.spawn(
            detached(fut)
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(epoch) => {
                        act.positions.open(epoch);
                        // Recovery: whatever was committed but not sent before a
                        // restart goes now.
                        act.sweep(ctx, true);
                        ctx.run_interval(act.sweep_interval, |act, ctx| {
                            act.touch = true;
                            act.advance(ctx);
                            act.sweep(ctx, false);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "outbox relay not opened; trying again");
                        ctx.run_later(RECORD_RETRY, |act, ctx| act.open(ctx));
                    }
                }),
        );
    }

    fn sweep(&mut self, ctx: &mut Context<Self>, everything: bool) {
        if everything && !self.ownership.settled() {
            // Recovery sweeps the partitions this node holds: wait for the leases.
            ctx.run_later(Duration::from_millis(50), |act, ctx| act.sweep(ctx, true));
            return;
        }
        let Some(epoch) = self.positions.epoch() else {
            return;
        };
        if self.sweeping {
            // One read at a time: on a slow database, sweeps do not pile up.
            self.sweep_again = Some(everything || self.sweep_again == Some(true));
            return;
        }
        self.sweeping = true;
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
        let node = self.node.clone();
        let dead_after = self.dead_after;
        let fut = async move {
            // The commands of relays gone (this node's earlier runs among
            // them) become outbox rows first, for this sweep to find.
            let copied = store.recover_relays(epoch, &node, dead_after).await?;
            if copied > 0 {
                tracing::info!(
                    count = copied,
                    "commands of relays gone moved to the outbox"
                );
            }
            if partitions == 0 {
                return Ok(Vec::new());
            }
            store.unsent(now, grace, SWEEP_LIMIT, partitions).await
        };
        ctx.spawn(detached(fut).into_actor(self).map(move |result, act, ctx| {
            act.swept(ctx, everything, result);
            if let Some(everything) = act.sweep_again.take() {
                act.sweep(ctx, everything);
            }
        }));
    }

    fn swept(
        &mut self,
        ctx: &mut Context<Self>,
        everything: bool,
        result: Result<Vec<OutboxMessage>, StoreError>,
    ) {
        self.sweeping = false;
        let let_go = std::mem::take(&mut self.let_go_while_sweeping);
        match result {
            Ok(mut rows) => {
                rows.retain(|m| !let_go.contains(&m.message_id));
                if !rows.is_empty() {
                    tracing::info!(count = rows.len(), "unsent outbox rows found");
                }
                if everything {
                    self.awaiting_recovery = Some(rows.iter().map(|m| m.message_id).collect());
                    self.check_recovered();
                }
                self.enqueue(rows, None);
                self.flush(ctx);
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "outbox sweep failed");
                if everything {
                    // Recovery is not finished until this sweep succeeds.
                    ctx.run_later(RECORD_RETRY, |act, ctx| act.sweep(ctx, true));
                }
            }
        }
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.open(ctx);
    }
}

impl Handler<Publish> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        self.enqueue(msg.messages, msg.position);
        self.flush(ctx);
    }
}

impl Handler<NotCommitted> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, msg: NotCommitted, ctx: &mut Context<Self>) {
        match msg {
            NotCommitted::Unsure(position) => {
                self.unsure.push(position);
                self.record(ctx);
            }
            NotCommitted::RelayGone(position) => {
                // Not written, so free; the next watermark written records
                // this relay anew, and its steps go on.
                self.positions.release(position);
                self.touch = true;
                self.advance(ctx);
            }
        }
    }
}

/// What one record covered.
struct Recorded {
    delivered: Vec<Uuid>,
    failed: Vec<(Queued, TransportError)>,
    failures: Vec<PublishFailure>,
    unsure: Vec<u64>,
}

/// What to do about a command its transport did not take: when to try again,
/// or (out of budget, or refused for good) a dead letter.
fn failure(
    m: &OutboxMessage,
    error: &TransportError,
    policy: RetryPolicy,
    now: DateTime<Utc>,
) -> PublishFailure {
    let id = m.message_id;
    let attempts = m.publish_attempts + 1;
    if error.permanent || attempts >= policy.max_attempts {
        tracing::error!(message_id = %id, saga_id = %m.saga_id, step = %m.step, attempts, error = %error, "command dead-lettered");
        PublishFailure::DeadLetter {
            message: m.clone(),
            error: error.reason.clone(),
            letter: dead_letter(m, error, attempts),
        }
    } else {
        let seed = id.as_u64_pair().1 ^ attempts as u64;
        let at = now + policy.backoff(attempts, seed);
        tracing::warn!(message_id = %id, attempts, retry_at = %at, error = %error, "command not published; will retry");
        PublishFailure::Retry {
            message: m.clone(),
            error: error.reason.clone(),
            at,
        }
    }
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
