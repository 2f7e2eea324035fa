//! How an orchestrator behaves: policies, intervals, budgets and its name.

use std::collections::HashMap;
use std::time::Duration;

use sagaplane_sagas::{Policy, RetryPolicy};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Step timeouts, retry budgets and deadline given to every new saga …
    pub policy: Policy,
    /// … unless its type has its own here.
    pub type_policies: HashMap<String, Policy>,
    /// A saga actor stops after this long without input.
    pub idle_timeout: Duration,
    /// How often due timers are looked for.
    pub timer_interval: Duration,
    /// How often the outbox is swept for rows left unsent.
    pub outbox_sweep_interval: Duration,
    /// How often a command its transport did not take is tried again, and how
    /// soon, before it is dead-lettered.
    pub publish: RetryPolicy,
    /// A saga whose actor panics this often within `crash_window` is suspended.
    pub crash_limit: u32,
    pub crash_window: Duration,
    /// This node's name in the partition leases; unique per process.
    pub node_id: String,
    /// How long a partition lease lasts unless renewed (every third of it).
    pub lease_ttl: Duration,
    /// When finished sagas are deleted; never when `None`.
    pub retention: Option<Retention>,
}

/// Finished sagas (completed, compensated, cancelled) are deleted with
/// their history, commands and inbox rows once finished this long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub finished_for: Duration,
    /// Sagas deleted per transaction …
    pub batch: u32,
    /// … and at most one transaction per partition owner this often.
    pub interval: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            type_policies: HashMap::new(),
            idle_timeout: Duration::from_secs(30),
            timer_interval: Duration::from_millis(100),
            outbox_sweep_interval: Duration::from_secs(5),
            publish: RetryPolicy {
                max_attempts: 10,
                backoff_initial_ms: 200,
                backoff_max_ms: 60_000,
                jitter: true,
            },
            crash_limit: 3,
            crash_window: Duration::from_secs(60),
            node_id: format!("node-{}", Uuid::new_v4().simple()),
            lease_ttl: Duration::from_secs(10),
            retention: None,
        }
    }
}

impl OrchestratorConfig {
    /// The policy new sagas of `saga_type` start with.
    pub fn policy_for(&self, saga_type: &str) -> &Policy {
        self.type_policies.get(saga_type).unwrap_or(&self.policy)
    }
}
