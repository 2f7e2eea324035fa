//! Partition leases: which sagas' timers and unsent commands this node looks
//! after. Every saga belongs to one of [`PARTITIONS`] partitions; a node holds
//! a fair share of them through leases in the store, renews them while it
//! lives, and takes over those of a node that stopped renewing.
//!
//! Leases divide work; they are not what keeps a saga from taking a step twice.
//! Any node may handle any saga's input (a reply may reach any of them), and
//! the optimistic version check on every append decides between two nodes
//! that acted on the same saga at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::ports::TimerStore;
use crate::task::detached;

/// Partitions of the saga space; fixed by the schema.
pub const PARTITIONS: u32 = 64;

/// The partitions this node holds now, as a bit set; shared with the timer
/// service and the outbox relay.
#[derive(Clone, Default)]
pub struct Ownership {
    mask: Arc<AtomicU64>,
    leased: Arc<AtomicBool>,
}

impl Ownership {
    /// Bit `p` set: this node holds partition `p`.
    pub fn mask(&self) -> u64 {
        self.mask.load(Ordering::Acquire)
    }

    pub fn count(&self) -> u32 {
        self.mask().count_ones()
    }

    /// Whether the first lease round has answered (start-up recovery waits).
    pub fn settled(&self) -> bool {
        self.leased.load(Ordering::Acquire)
    }

    fn set(&self, mask: u64) {
        self.mask.store(mask, Ordering::Release);
        self.leased.store(true, Ordering::Release);
    }
}

pub(crate) struct LeaseKeeper {
    store: Arc<dyn TimerStore>,
    node: String,
    ttl: Duration,
    ownership: Ownership,
    metrics: Metrics,
    last_renewed: Option<Instant>,
    busy: bool,
}

impl LeaseKeeper {
    pub fn new(
        store: Arc<dyn TimerStore>,
        node: String,
        ttl: Duration,
        ownership: Ownership,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            node,
            ttl,
            ownership,
            metrics,
            last_renewed: None,
            busy: false,
        }
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let node = self.node.clone();
        let ttl = self.ttl;
        let fut = async move { store.lease_partitions(&node, ttl).await };
        ctx.spawn(detached(fut).into_actor(self).map(|result, act, _ctx| {
            act.busy = false;
            match result {
                Ok(mask) => {
                    if mask != act.ownership.mask() {
                        tracing::info!(
                            node = %act.node,
                            partitions = mask.count_ones(),
                            "partition leases changed"
                        );
                    }
                    act.ownership.set(mask);
                    act.last_renewed = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error.message = %e, "partition leases not renewed");
                    // Past two thirds of the lease another node may take them:
                    // stop acting as their owner before that.
                    let stale = act
                        .last_renewed
                        .is_none_or(|t| t.elapsed() > act.ttl * 2 / 3);
                    if stale && act.ownership.mask() != 0 {
                        act.ownership.set(0);
                    }
                }
            }
            act.metrics
                .partitions_owned
                .set(act.ownership.count() as i64);
        }));
    }
}

impl Actor for LeaseKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.renew(ctx);
        ctx.run_interval(self.ttl / 3, |act, ctx| act.renew(ctx));
    }
}
