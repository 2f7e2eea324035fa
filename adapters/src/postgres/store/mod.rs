//! [`EventStore`] on PostgreSQL: the store type and one impl per port —
//! [`SagaStore`], [`OutboxStore`], [`TimerStore`], [`EventStore`] (readiness);
//! `OperatorQueries` is in `operator`. Saga steps go to the committer; every
//! other method is a query in the room of its concern (`history`, `outbox`,
//! `timers`, `definitions`, and `connect` for readiness), a function of the pool.

mod definitions;
mod history;
mod outbox;
mod timers;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{
    Backlog, CommitOutcome, DeadLetter, DefinitionStore, DueTimer, EventRecord, EventStore,
    OutboxMessage, OutboxStore, PublishFailure, SagaRecord, SagaStore, StepCommit, StoreError,
    StoredDefinition, StoredHistory, TimerStore,
};
use sagaplane_sagas::SagaId;
use sqlx::PgPool;
use uuid::Uuid;

use super::committer::{Committer, GroupCommit};
use super::connect::{self, ConnectError};
use super::counts::TerminalCounts;

/// The event store, read model, outbox, inbox, timers and dead letters on
/// PostgreSQL. Saga steps are written by its committer (group commit), on a
/// thread and connections of its own; everything else is a query on the pool.
pub struct PgEventStore {
    pool: PgPool,
    committer: Committer,
    terminal_counts: TerminalCounts,
}

impl PgEventStore {
    /// A store on `pool`; its committer gets connections of its own, made with
    /// the pool's options.
    pub fn new(pool: PgPool, group_commit: GroupCommit) -> Self {
        let committer = Committer::start((*pool.connect_options()).clone(), group_commit);
        Self {
            pool,
            committer,
            terminal_counts: TerminalCounts::default(),
        }
    }

    /// Connects to `url`, creating the database if it is missing and applying
    /// any migration not yet applied.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        group_commit: GroupCommit,
    ) -> Result<Self, ConnectError> {
        Ok(Self::new(
            connect::pool(url, max_connections).await?,
            group_commit,
        ))
    }

    /// The pool the queries run on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn terminal_counts(&self) -> &TerminalCounts {
        &self.terminal_counts
    }
}

#[async_trait]
impl SagaStore for PgEventStore {
    async fn load(&self, saga: SagaId) -> Result<Option<StoredHistory>, StoreError> {
        history::load(&self.pool, saga).await
    }

    async fn commit(&self, step: Arc<StepCommit>) -> Result<CommitOutcome, StoreError> {
        self.committer.commit(step).await
    }

    async fn record_ignored(
        &self,
        message_id: &str,
        saga: SagaId,
        detail: &str,
    ) -> Result<bool, StoreError> {
        history::record_ignored(&self.pool, message_id, saga, detail).await
    }

    async fn suspend(&self, saga: SagaId, reason: &str) -> Result<bool, StoreError> {
        history::suspend(&self.pool, saga, reason).await
    }

    async fn saga_type(&self, saga: SagaId) -> Result<Option<String>, StoreError> {
        history::saga_type(&self.pool, saga).await
    }

    async fn get(&self, saga: SagaId) -> Result<Option<SagaRecord>, StoreError> {
        history::get(&self.pool, saga).await
    }

    async fn find_by_key(
        &self,
        saga_type: &str,
        business_key: &str,
    ) -> Result<Option<SagaRecord>, StoreError> {
        history::find_by_key(&self.pool, saga_type, business_key).await
    }

    async fn events(&self, saga: SagaId) -> Result<Vec<EventRecord>, StoreError> {
        history::events(&self.pool, saga).await
    }
}

#[async_trait]
impl OutboxStore for PgEventStore {
    async fn open_relay(&self, node: &str) -> Result<u64, StoreError> {
        outbox::open_relay(&self.pool, node).await
    }

    async fn relay_published(&self, epoch: u64, node: &str, below: u64) -> Result<(), StoreError> {
        outbox::relay_published(&self.pool, epoch, node, below).await
    }

    async fn recover_relays(
        &self,
        epoch: u64,
        node: &str,
        dead_after: std::time::Duration,
    ) -> Result<u64, StoreError> {
        outbox::recover_relays(&self.pool, epoch, node, dead_after).await
    }

    async fn recover_positions(&self, positions: &[u64]) -> Result<(), StoreError> {
        outbox::recover_positions(&self.pool, positions).await
    }

    async fn unsent(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        outbox::unsent(&self.pool, now, grace, limit, partitions).await
    }

    async fn mark_sent(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        outbox::mark_sent(&self.pool, ids).await
    }

    async fn publish_failed(&self, failures: &[PublishFailure]) -> Result<(), StoreError> {
        outbox::publish_failed(&self.pool, failures).await
    }

    async fn requeue(&self, message_id: Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        outbox::requeue(&self.pool, message_id).await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        outbox::dead_letter(&self.pool, &letter).await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        outbox::backlog(&self.pool).await
    }
}

#[async_trait]
impl TimerStore for PgEventStore {
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<DueTimer>, StoreError> {
        timers::due(&self.pool, now, limit, partitions).await
    }

    async fn lease_partitions(
        &self,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<u64, StoreError> {
        timers::lease_partitions(&self.pool, node, ttl).await
    }

    async fn purge_finished(
        &self,
        ended_before: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<u64, StoreError> {
        timers::purge_finished(&self.pool, ended_before, limit, partitions).await
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn ready(&self) -> Result<(), String> {
        connect::ready(&self.pool).await
    }
}

#[async_trait]
impl DefinitionStore for PgEventStore {
    async fn publish_definitions(
        &self,
        offered: &[StoredDefinition],
    ) -> Result<Vec<StoredDefinition>, StoreError> {
        definitions::publish(&self.pool, offered).await
    }
}
