//! An [`EventStore`] in memory, with the PostgreSQL store's semantics where
//! the core relies on them: optimistic concurrency on the saga's version, one
//! inbox entry per message, one saga per `(type, business key)`, outbox rows
//! that are sent, retried or dead-lettered, timers from the read model, and
//! partition leases that expire. For tests of the core that need no database;
//! nothing survives the process.
//!
//! Faults are switched on from the test: [`MemoryStore::fail_leases`] makes
//! every lease renewal fail, [`MemoryStore::fail_commits`] every step, and
//! [`MemoryStore::slow_sweeps`] answers the outbox sweep late, as a slow
//! database would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::{SagaId, Status};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::leases::PARTITIONS;
use crate::ports::{
    Backlog, CommandRecord, CommandRef, CommitOutcome, DeadLetter, DeadLetterRecord,
    DefinitionStore, DueTimer, EventRecord, EventStore, InboxRecord, OperatorQueries,
    OutboxMessage, OutboxStore, PublishFailure, Resolution, SagaFilter, SagaRecord, SagaStats,
    SagaStore, StepCommit, StoreError, StoredDefinition, StoredHistory, TimerStore, EPOCH_SHIFT,
    SUSPENDED_BY_SUPERVISOR,
};

/// The partition of a saga in this store (PostgreSQL hashes the id's text;
/// any stable spread will do here).
pub fn partition_of(saga: SagaId) -> u32 {
    (saga.as_uuid().as_u64_pair().1 % PARTITIONS as u64) as u32
}

#[derive(Default)]
struct Saga {
    record: Option<SagaRecord>,
    traceparent: Option<String>,
    events: Vec<EventRecord>,
    /// The inbound messages its inbox recorded.
    inbox: Vec<InboxRecord>,
}

/// A command, kept with its step (`position`) or in the outbox (`stored`).
struct OutboxRow {
    message: OutboxMessage,
    position: Option<u64>,
    stored: bool,
    sent_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    dead: bool,
}

/// A relay's watermark, and when it was last seen.
struct Relay {
    node: String,
    below: u64,
    seen: DateTime<Utc>,
}

impl Inner {
    /// When the command was sent, as far as the store knows: an outbox row's
    /// mark, or for one kept with its step, the step's time once its relay's
    /// watermark passed it (or the relay is gone and it was not copied).
    fn sent_at(&self, row: &OutboxRow) -> Option<DateTime<Utc>> {
        match (row.stored, row.position) {
            (false, Some(p)) => match self.relays.get(&(p >> EPOCH_SHIFT)) {
                Some(r) if p >= r.below => None,
                _ => Some(row.message.created_at),
            },
            _ => row.sent_at,
        }
    }

    fn unsent_stored(&self) -> impl Iterator<Item = &OutboxRow> + Clone {
        self.outbox
            .iter()
            .filter(|r| r.stored && r.sent_at.is_none() && !r.dead)
    }
}

#[derive(Default)]
struct Inner {
    sagas: HashMap<SagaId, Saga>,
    keys: HashMap<(String, String), SagaId>,
    inbox: HashSet<String>,
    outbox: Vec<OutboxRow>,
    relays: HashMap<u64, Relay>,
    epochs: u64,
    dead_letters: Vec<DeadLetterRecord>,
    /// partition → (owner, expires at)
    leases: HashMap<u32, (String, DateTime<Utc>)>,
    /// node → last heartbeat
    nodes: HashMap<String, DateTime<Utc>>,
    commits: u64,
}

/// Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    clock: SharedClock,
    fail_leases: Arc<AtomicBool>,
    fail_commits: Arc<AtomicBool>,
    /// Milliseconds between reading the unsent rows and answering with them.
    sweep_lag_ms: Arc<AtomicU64>,
    definitions: Arc<Mutex<BTreeMap<(String, u32), StoredDefinition>>>,
}

fn unavailable() -> StoreError {
    StoreError::Database("the memory store is failing on purpose".into())
}

impl MemoryStore {
    /// A store whose own times (leases, `sent_at`) come from `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            inner: Arc::default(),
            clock,
            fail_leases: Arc::default(),
            fail_commits: Arc::default(),
            sweep_lag_ms: Arc::default(),
            definitions: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("memory store lock poisoned")
    }

    /// While on, every lease renewal fails (as when the database is unreachable).
    pub fn fail_leases(&self, on: bool) {
        self.fail_leases.store(on, Ordering::Release);
    }

    /// While on, every step's commit fails.
    pub fn fail_commits(&self, on: bool) {
        self.fail_commits.store(on, Ordering::Release);
    }

    /// The outbox sweep reads the unsent rows, then answers `lag` later:
    /// what it answers may have been sent meanwhile.
    pub fn slow_sweeps(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.sweep_lag_ms.store(ms, Ordering::Release);
    }

    /// Steps committed so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// Every outbox row as stored, oldest first, with whether it was sent and
    /// whether it is dead-lettered.
    pub fn outbox(&self) -> Vec<(OutboxMessage, bool, bool)> {
        let inner = self.lock();
        inner
            .outbox
            .iter()
            .map(|r| (r.message.clone(), inner.sent_at(r).is_some(), r.dead))
            .collect()
    }
}

fn commit_step(inner: &mut Inner, step: &StepCommit) -> Result<CommitOutcome, StoreError> {
    // As in PostgreSQL: a step whose relay was taken over writes nothing.
    if let Some(p) = step.kept_on_event() {
        if !inner.relays.contains_key(&(p >> EPOCH_SHIFT)) {
            return Err(StoreError::RelayGone);
        }
    }
    if let Some(id) = &step.inbox {
        if inner.inbox.contains(id) {
            return Ok(CommitOutcome::DuplicateInbox);
        }
    }
    let current = inner
        .sagas
        .get(&step.saga_id)
        .and_then(|s| s.record.as_ref())
        .map_or(0, |r| r.version as u64);
    if current != step.expected_version {
        return Err(StoreError::Conflict);
    }
    if let Some(new) = &step.new_saga {
        let key = (step.saga_type.to_owned(), new.business_key.clone());
        if inner.keys.contains_key(&key) {
            return Ok(CommitOutcome::BusinessKeyTaken);
        }
        inner.keys.insert(key, step.saga_id);
    }
    let saga = inner.sagas.entry(step.saga_id).or_default();
    match (&mut saga.record, &step.new_saga) {
        (Some(r), _) if r.saga_type != step.saga_type => return Err(StoreError::Conflict),
        (Some(r), _) => r.apply(step),
        (None, Some(new)) => {
            saga.traceparent = new.traceparent.clone();
            saga.record = Some(SagaRecord::created(step, new));
        }
        (None, None) => return Err(StoreError::Conflict),
    }
    for (i, e) in step.events.iter().enumerate() {
        saga.events.push(EventRecord {
            seq: (step.expected_version + i as u64 + 1) as i64,
            event_type: e.event_type.to_owned(),
            data: e.data.clone(),
            recorded_at: e.at,
        });
    }
    if let Some(id) = &step.inbox {
        saga.inbox.push(InboxRecord {
            message_id: id.clone(),
            outcome: "applied".into(),
            detail: None,
            received_at: step.at,
        });
        inner.inbox.insert(id.clone());
    }
    inner.outbox.extend(step.outbox.iter().map(|m| OutboxRow {
        message: m.clone(),
        position: step.relay_pos,
        stored: step.relay_pos.is_none(),
        sent_at: None,
        next_attempt_at: None,
        dead: false,
    }));
    inner.commits += 1;
    Ok(CommitOutcome::Committed)
}

fn record_dead_letter(inner: &mut Inner, letter: &DeadLetter, at: DateTime<Utc>) {
    let id = inner.dead_letters.len() as i64 + 1;
    inner.dead_letters.push(DeadLetterRecord {
        id,
        channel: letter.channel.clone(),
        reason: letter.reason.clone(),
        raw: letter.raw.clone(),
        headers: letter.headers.clone(),
        received_at: at,
        resolution: None,
        resolved_by: None,
        resolved_note: None,
        resolved_at: None,
        outbox_message_id: letter.outbox_message_id,
    });
}

fn in_partitions(saga: SagaId, partitions: u64) -> bool {
    partitions >> partition_of(saga) & 1 == 1
}

#[async_trait]
impl SagaStore for MemoryStore {
    async fn load(&self, saga: SagaId) -> Result<Option<StoredHistory>, StoreError> {
        let inner = self.lock();
        let Some(s) = inner.sagas.get(&saga) else {
            return Ok(None);
        };
        let Some(record) = &s.record else {
            return Ok(None);
        };
        Ok(Some(StoredHistory {
            saga_type: record.saga_type.clone(),
            traceparent: s.traceparent.clone(),
            version: record.version as u64,
            events: s
                .events
                .iter()
                .filter(|e| e.event_type != SUSPENDED_BY_SUPERVISOR)
                .map(|e| e.data.clone())
                .collect(),
        }))
    }

    async fn commit(&self, step: Arc<StepCommit>) -> Result<CommitOutcome, StoreError> {
        if self.fail_commits.load(Ordering::Acquire) {
            return Err(unavailable());
        }
        commit_step(&mut self.lock(), &step)
    }

    async fn record_ignored(
        &self,
        message_id: &str,
        saga: SagaId,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if !inner.inbox.insert(message_id.to_owned()) {
            return Ok(false);
        }
        if let Some(s) = inner.sagas.get_mut(&saga) {
            s.inbox.push(InboxRecord {
                message_id: message_id.to_owned(),
                outcome: "ignored".into(),
                detail: Some(detail.to_owned()),
                received_at: now,
            });
        }
        Ok(true)
    }

    async fn suspend(&self, saga: SagaId, reason: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(s) = inner.sagas.get_mut(&saga) else {
            return Ok(false);
        };
        let Some(record) = s.record.as_mut() else {
            return Ok(false);
        };
        if !matches!(record.status.as_str(), "running" | "compensating") {
            return Ok(false);
        }
        record.status = Status::Suspended.as_str().to_owned();
        record.last_error = Some(reason.to_owned());
        record.wake_at = None;
        record.version += 1;
        record.updated_at = now;
        s.events.push(EventRecord {
            seq: record.version,
            event_type: SUSPENDED_BY_SUPERVISOR.to_owned(),
            data: serde_json::json!({ "reason": reason }),
            recorded_at: now,
        });
        Ok(true)
    }

    async fn saga_type(&self, saga: SagaId) -> Result<Option<String>, StoreError> {
        Ok(self.get(saga).await?.map(|r| r.saga_type))
    }

    async fn get(&self, saga: SagaId) -> Result<Option<SagaRecord>, StoreError> {
        Ok(self.lock().sagas.get(&saga).and_then(|s| s.record.clone()))
    }

    async fn find_by_key(
        &self,
        saga_type: &str,
        business_key: &str,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let id = self
            .lock()
            .keys
            .get(&(saga_type.to_owned(), business_key.to_owned()))
            .copied();
        match id {
            Some(id) => self.get(id).await,
            None => Ok(None),
        }
    }

    async fn events(&self, saga: SagaId) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self
            .lock()
            .sagas
            .get(&saga)
            .map(|s| s.events.clone())
            .unwrap_or_default())
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn open_relay(&self, node: &str) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.epochs += 1;
        let epoch = inner.epochs;
        let relay = Relay {
            node: node.to_owned(),
            below: epoch << EPOCH_SHIFT,
            seen: now,
        };
        inner.relays.insert(epoch, relay);
        Ok(epoch)
    }

    async fn relay_published(&self, epoch: u64, node: &str, below: u64) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let relay = inner.relays.entry(epoch).or_insert_with(|| Relay {
            node: node.to_owned(),
            below,
            seen: now,
        });
        relay.below = relay.below.max(below);
        relay.seen = now;
        Ok(())
    }

    async fn recover_relays(
        &self,
        epoch: u64,
        node: &str,
        dead_after: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let dead_after = chrono::Duration::from_std(dead_after).unwrap_or(chrono::Duration::MAX);
        let cutoff = self.clock.now() - dead_after;
        let mut inner = self.lock();
        let gone: Vec<(u64, u64)> = inner
            .relays
            .iter()
            .filter(|(e, r)| **e != epoch && (r.node == node || r.seen < cutoff))
            .map(|(e, r)| (*e, r.below))
            .collect();
        let mut copied = 0;
        for (gone_epoch, below) in gone {
            inner.relays.remove(&gone_epoch);
            for row in inner.outbox.iter_mut().filter(|r| !r.stored) {
                if row
                    .position
                    .is_some_and(|p| p >> EPOCH_SHIFT == gone_epoch && p >= below)
                {
                    row.stored = true;
                    copied += 1;
                }
            }
        }
        Ok(copied)
    }

    async fn recover_positions(&self, positions: &[u64]) -> Result<(), StoreError> {
        for row in self.lock().outbox.iter_mut() {
            if row.position.is_some_and(|p| positions.contains(&p)) {
                row.stored = true;
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        let now = self.clock.now();
        record_dead_letter(&mut self.lock(), &letter, now);
        Ok(())
    }

    async fn unsent(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut rows: Vec<OutboxMessage> = self
            .lock()
            .unsent_stored()
            .filter(|r| match r.next_attempt_at {
                Some(at) => at <= now,
                None => r.message.created_at <= now - grace,
            })
            .filter(|r| in_partitions(r.message.saga_id, partitions))
            .map(|r| r.message.clone())
            .collect();
        rows.sort_by_key(|m| m.message_id);
        rows.truncate(limit.max(0) as usize);
        let lag = self.sweep_lag_ms.load(Ordering::Acquire);
        if lag > 0 {
            tokio::time::sleep(Duration::from_millis(lag)).await;
        }
        Ok(rows)
    }

    async fn mark_sent(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let now = self.clock.now();
        for row in self.lock().outbox.iter_mut() {
            if row.stored && row.sent_at.is_none() && ids.contains(&row.message.message_id) {
                row.sent_at = Some(now);
                row.next_attempt_at = None;
            }
        }
        Ok(())
    }

    async fn publish_failed(&self, failures: &[PublishFailure]) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        for failure in failures {
            let id = failure.message().message_id;
            let Some(row) = inner.outbox.iter_mut().find(|r| r.message.message_id == id) else {
                continue;
            };
            if row.stored && row.sent_at.is_some() {
                continue;
            }
            row.stored = true;
            match failure {
                PublishFailure::Retry { at, .. } => {
                    row.message.publish_attempts += 1;
                    row.next_attempt_at = Some(*at);
                }
                PublishFailure::DeadLetter { letter, .. } => {
                    if row.dead {
                        continue;
                    }
                    row.message.publish_attempts += 1;
                    row.next_attempt_at = None;
                    row.dead = true;
                    record_dead_letter(&mut inner, letter, now);
                }
            }
        }
        Ok(())
    }

    async fn requeue(&self, message_id: Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        let mut inner = self.lock();
        let row = inner.outbox.iter_mut().find(|r| {
            r.message.message_id == message_id && r.stored && r.sent_at.is_none() && r.dead
        });
        Ok(row.map(|r| {
            r.dead = false;
            r.next_attempt_at = None;
            r.message.publish_attempts = 0;
            r.message.clone()
        }))
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let inner = self.lock();
        // Outbox rows and commands above their relay's watermark alike.
        let unsent = inner
            .outbox
            .iter()
            .filter(|r| !r.dead && inner.sent_at(r).is_none());
        Ok(Backlog {
            outbox_unsent: unsent.clone().count() as i64,
            oldest_unsent_at: unsent.map(|r| r.message.created_at).min(),
            dead_letters: inner
                .dead_letters
                .iter()
                .filter(|d| d.resolution.is_none())
                .count() as i64,
        })
    }
}

#[async_trait]
impl TimerStore for MemoryStore {
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let mut due: Vec<DueTimer> = self
            .lock()
            .sagas
            .values()
            .filter_map(|s| s.record.as_ref())
            .filter(|r| r.wake_at.is_some_and(|w| w <= now) && in_partitions(r.id, partitions))
            .map(|r| DueTimer {
                saga_id: r.id,
                saga_type: r.saga_type.clone(),
                wake_at: r.wake_at.expect("filtered on"),
            })
            .collect();
        due.sort_by_key(|t| t.wake_at);
        due.truncate(limit.max(0) as usize);
        Ok(due)
    }

    async fn purge_finished(
        &self,
        ended_before: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let mut doomed: Vec<(DateTime<Utc>, SagaId, String, String)> = inner
            .sagas
            .values()
            .filter_map(|s| s.record.as_ref())
            .filter(|r| {
                matches!(r.status.as_str(), "completed" | "compensated" | "cancelled")
                    && r.updated_at < ended_before
                    && in_partitions(r.id, partitions)
            })
            .map(|r| {
                (
                    r.created_at,
                    r.id,
                    r.saga_type.clone(),
                    r.business_key.clone(),
                )
            })
            .collect();
        doomed.sort();
        doomed.truncate(limit.max(0) as usize);
        for (_, id, saga_type, business_key) in &doomed {
            inner.sagas.remove(id);
            inner
                .keys
                .remove(&(saga_type.clone(), business_key.clone()));
            inner.outbox.retain(|row| row.message.saga_id != *id);
        }
        Ok(doomed.len() as u64)
    }

    async fn lease_partitions(
        &self,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<u64, StoreError> {
        if self.fail_leases.load(Ordering::Acquire) {
            return Err(unavailable());
        }
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let mut inner = self.lock();
        inner.nodes.insert(node.to_owned(), now);
        let live = inner.nodes.values().filter(|t| **t > now - ttl).count();
        let fair_share = (PARTITIONS as usize).div_ceil(live.max(1));
        let mut held: Vec<u32> = Vec::new();
        for p in 0..PARTITIONS {
            let lease = inner.leases.get(&p);
            let mine = lease.is_some_and(|(owner, exp)| owner == node && *exp > now);
            if mine && held.len() < fair_share {
                held.push(p);
            } else if mine {
                inner.leases.remove(&p);
            }
        }
        for p in 0..PARTITIONS {
            if held.len() >= fair_share {
                break;
            }
            let free = inner.leases.get(&p).is_none_or(|(_, exp)| *exp <= now);
            if free {
                held.push(p);
            }
        }
        for p in &held {
            inner.leases.insert(*p, (node.to_owned(), now + ttl));
        }
        Ok(held.iter().fold(0u64, |mask, p| mask | 1 << p))
    }
}

#[async_trait]
impl OperatorQueries for MemoryStore {
    async fn search(&self, f: &SagaFilter) -> Result<Vec<SagaRecord>, StoreError> {
        let unsettled = ["running", "compensating", "suspended"];
        let mut found: Vec<SagaRecord> = self
            .lock()
            .sagas
            .values()
            .filter_map(|s| s.record.clone())
            .filter(|r| f.statuses.is_empty() || f.statuses.contains(&r.status))
            .filter(|r| f.saga_types.is_empty() || f.saga_types.contains(&r.saga_type))
            .filter(|r| f.business_key.as_ref().is_none_or(|k| *k == r.business_key))
            .filter(|r| f.created_from.is_none_or(|t| r.created_at >= t))
            .filter(|r| f.created_to.is_none_or(|t| r.created_at < t))
            .filter(|r| {
                f.stuck_since
                    .is_none_or(|t| unsettled.contains(&r.status.as_str()) && r.updated_at < t)
            })
            .filter(|r| f.after.is_none_or(|after| (r.created_at, r.id) < after))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        found.truncate(f.limit.max(0) as usize);
        Ok(found)
    }

    async fn stats(&self) -> Result<SagaStats, StoreError> {
        let inner = self.lock();
        let records: Vec<&SagaRecord> = inner
            .sagas
            .values()
            .filter_map(|s| s.record.as_ref())
            .collect();
        let mut counts: HashMap<(String, String), i64> = HashMap::new();
        for r in &records {
            *counts
                .entry((r.saga_type.clone(), r.status.clone()))
                .or_default() += 1;
        }
        let mut counts: Vec<(String, String, i64)> =
            counts.into_iter().map(|((t, s), n)| (t, s, n)).collect();
        counts.sort();
        Ok(SagaStats {
            counts,
            oldest_unsettled: records
                .iter()
                .filter(|r| matches!(r.status.as_str(), "running" | "compensating"))
                .map(|r| (r.created_at, r.id))
                .min()
                .map(|(at, id)| (id, at)),
            suspended: records.iter().filter(|r| r.status == "suspended").count() as i64,
            terminal_counted_at: Some(Utc::now()),
        })
    }

    async fn command_for(
        &self,
        saga: SagaId,
        step: &str,
        attempt: u32,
    ) -> Result<Option<CommandRef>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .outbox
            .iter()
            .filter(|r| {
                r.message.saga_id == saga && r.message.step == step && r.message.attempt == attempt
            })
            .max_by_key(|r| r.message.message_id)
            .map(|r| CommandRef {
                message_id: r.message.message_id,
                created_at: r.message.created_at,
                sent_at: inner.sent_at(r),
            }))
    }

    async fn saga_messages(
        &self,
        saga: SagaId,
    ) -> Result<(Vec<CommandRecord>, Vec<InboxRecord>), StoreError> {
        let inner = self.lock();
        let commands = inner
            .outbox
            .iter()
            .filter(|r| r.message.saga_id == saga)
            .map(|r| CommandRecord {
                message_id: r.message.message_id,
                step: r.message.step.clone(),
                attempt: r.message.attempt,
                participant: r.message.participant.clone(),
                command_type: r.message.command_type.clone(),
                created_at: r.message.created_at,
                sent_at: inner.sent_at(r),
                publish_attempts: r.message.publish_attempts,
                last_error: None,
                dead_lettered: r.dead,
                traceparent: r.message.traceparent.clone(),
            })
            .collect();
        let inbox = inner
            .sagas
            .get(&saga)
            .map(|s| s.inbox.clone())
            .unwrap_or_default();
        Ok((commands, inbox))
    }

    async fn dead_letters(
        &self,
        open_only: bool,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        Ok(self
            .lock()
            .dead_letters
            .iter()
            .filter(|d| d.id > after.unwrap_or(0) && (!open_only || d.resolution.is_none()))
            .take(limit.max(0) as usize)
            .cloned()
            .collect())
    }

    async fn find_dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
        Ok(self
            .lock()
            .dead_letters
            .iter()
            .find(|d| d.id == id)
            .cloned())
    }

    async fn resolve_dead_letter(
        &self,
        id: i64,
        resolution: Resolution,
        by: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(d) = inner
            .dead_letters
            .iter_mut()
            .find(|d| d.id == id && d.resolution.is_none())
        else {
            return Ok(false);
        };
        d.resolution = Some(resolution);
        d.resolved_by = Some(by.to_owned());
        d.resolved_note = Some(note.to_owned());
        d.resolved_at = Some(now);
        Ok(true)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

#[async_trait]
impl DefinitionStore for MemoryStore {
    async fn publish_definitions(
        &self,
        offered: &[StoredDefinition],
    ) -> Result<Vec<StoredDefinition>, StoreError> {
        let mut stored = self.definitions.lock().expect("definitions lock poisoned");
        let changed = offered
            .iter()
            .any(|d| stored.values().any(|s| s.conflicts_with(d)));
        for d in offered.iter().filter(|_| !changed) {
            stored
                .entry((d.saga_type.clone(), d.version))
                .or_insert_with(|| d.clone());
        }
        Ok(stored.values().cloned().collect())
    }
}
