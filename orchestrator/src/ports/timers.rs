//! Durable timers, the partition leases that divide them between nodes, and
//! the retention of finished sagas, which each partition's owner applies.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaplane_sagas::SagaId;

use super::error::StoreError;

/// A saga whose timer is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub saga_id: SagaId,
    pub saga_type: String,
    pub wake_at: DateTime<Utc>,
}

/// Due timers, partition leases and retention.
#[async_trait]
pub trait TimerStore: Send + Sync + 'static {
    /// Sagas of the `partitions` (a bit set) whose wake-up time is at or
    /// before `now`, most overdue first.
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<Vec<DueTimer>, StoreError>;
    /// Renews `node`'s partition leases for `ttl`, takes free or expired ones
    /// up to a fair share of the live nodes, and gives back any above it; the
    /// partitions it holds now, as a bit set.
    async fn lease_partitions(
        &self,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<u64, StoreError>;
    /// Deletes up to `limit` sagas of the `partitions` (a bit set) that
    /// finished (completed, compensated or cancelled) before `ended_before`,
    /// oldest first, each with its history, its commands and its inbox rows,
    /// in one transaction; how many it deleted.
    async fn purge_finished(
        &self,
        ended_before: DateTime<Utc>,
        limit: i64,
        partitions: u64,
    ) -> Result<u64, StoreError>;
}
