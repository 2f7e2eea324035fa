//! What the orchestrator counts, for Prometheus.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub saga_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub saga_type: String,
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to ~65 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SettledLabels {
    pub saga_type: String,
    pub status: String,
}

/// Cheap to clone: every clone counts into the same metrics.
#[derive(Clone)]
pub struct Metrics {
    pub sagas_started: Family<TypeLabels, Counter>,
    /// Sagas that reached completed, compensated, cancelled or suspended.
    pub sagas_settled: Family<SettledLabels, Counter>,
    pub inbox_duplicates: Counter,
    pub inputs_ignored: Counter,
    pub dead_letters: Counter,
    /// Replies given back to their broker for redelivery (not applicable now).
    pub inbound_abandoned: Family<ChannelLabels, Counter>,
    /// Receive requests to a broker that failed.
    pub receive_errors: Family<ChannelLabels, Counter>,
    pub commands_published: Counter,
    pub publish_failures: Counter,
    pub commands_dead_lettered: Counter,
    pub actor_panics: Counter,
    pub partitions_owned: Gauge,
    pub timers_fired: Counter,
    /// Finished sagas deleted by retention.
    pub retention_deleted: Counter,
    /// Seconds a saga step waited for its transaction, as the actor saw it.
    pub store_commit_seconds: Histogram,
    /// Saga steps written per transaction (group commit).
    pub store_batch_size: Histogram,
    /// Seconds from an attempt of a step being sent to the saga moving on.
    pub step_seconds: HistogramFamily<StepLabels>,
    /// Seconds between a timer falling due and its firing.
    pub timer_lag_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sagas_started: Family::default(),
            sagas_settled: Family::default(),
            inbox_duplicates: Counter::default(),
            inputs_ignored: Counter::default(),
            dead_letters: Counter::default(),
            inbound_abandoned: Family::default(),
            receive_errors: Family::default(),
            commands_published: Counter::default(),
            publish_failures: Counter::default(),
            commands_dead_lettered: Counter::default(),
            actor_panics: Counter::default(),
            partitions_owned: Gauge::default(),
            timers_fired: Counter::default(),
            retention_deleted: Counter::default(),
            // 100 us to ~3 s.
            store_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 1 to 512 steps.
            store_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            step_seconds: Family::new_with_constructor(seconds_histogram),
            timer_lag_seconds: seconds_histogram(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("sagas_started", "Sagas started", self.sagas_started.clone());
        registry.register(
            "sagas_settled",
            "Sagas that reached a terminal status or were suspended",
            self.sagas_settled.clone(),
        );
        registry.register(
            "inbox_duplicates",
            "Inbound messages that had been handled before",
            self.inbox_duplicates.clone(),
        );
        registry.register(
            "inputs_ignored",
            "Inbound messages recorded but not applied (late, stale or foreign)",
            self.inputs_ignored.clone(),
        );
        registry.register(
            "dead_letters",
            "Inbound messages stored as dead letters",
            self.dead_letters.clone(),
        );
        registry.register(
            "inbound_abandoned",
            "Replies given back to their broker for redelivery because they could not be applied then",
            self.inbound_abandoned.clone(),
        );
        registry.register(
            "receive_errors",
            "Receive requests to a broker that failed (retried with back-off)",
            self.receive_errors.clone(),
        );
        registry.register(
            "commands_published",
            "Commands handed to their transport",
            self.commands_published.clone(),
        );
        registry.register(
            "publish_failures",
            "Failed attempts to publish a command (each is retried)",
            self.publish_failures.clone(),
        );
        registry.register(
            "commands_dead_lettered",
            "Commands dead-lettered after their publish budget or a permanent refusal",
            self.commands_dead_lettered.clone(),
        );
        registry.register(
            "actor_panics",
            "Saga inputs that panicked (the actor is rebuilt from its events)",
            self.actor_panics.clone(),
        );
        registry.register(
            "partitions_owned",
            "Saga partitions this node holds the lease of (of 64)",
            self.partitions_owned.clone(),
        );
        registry.register(
            "timers_fired",
            "Due timers fired",
            self.timers_fired.clone(),
        );
        registry.register(
            "retention_sagas_deleted",
            "Finished sagas deleted, with their history, commands and inbox rows, by retention",
            self.retention_deleted.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Time a saga step waited for its transaction",
            self.store_commit_seconds.clone(),
        );
        registry.register(
            "store_batch_size",
            "Saga steps written per transaction (group commit)",
            self.store_batch_size.clone(),
        );
        registry.register(
            "step_seconds",
            "Time from an attempt of a step being sent until the saga moved on (reply, timeout or intervention)",
            self.step_seconds.clone(),
        );
        registry.register(
            "timer_lag_seconds",
            "Time between a timer falling due and its firing",
            self.timer_lag_seconds.clone(),
        );
    }

    pub fn abandoned(&self, channel: &str) {
        let labels = ChannelLabels {
            channel: channel.to_owned(),
        };
        self.inbound_abandoned.get_or_create(&labels).inc();
    }

    pub fn receive_failed(&self, channel: &str) {
        let labels = ChannelLabels {
            channel: channel.to_owned(),
        };
        self.receive_errors.get_or_create(&labels).inc();
    }

    pub(crate) fn started(&self, saga_type: &str) {
        let labels = TypeLabels {
            saga_type: saga_type.to_owned(),
        };
        self.sagas_started.get_or_create(&labels).inc();
    }

    pub(crate) fn step_finished(&self, saga_type: &str, step: &str, seconds: f64) {
        let labels = StepLabels {
            saga_type: saga_type.to_owned(),
            step: step.to_owned(),
        };
        self.step_seconds.get_or_create(&labels).observe(seconds);
    }

    pub(crate) fn settled(&self, saga_type: &str, status: &str) {
        let labels = SettledLabels {
            saga_type: saga_type.to_owned(),
            status: status.to_owned(),
        };
        self.sagas_settled.get_or_create(&labels).inc();
    }
}
