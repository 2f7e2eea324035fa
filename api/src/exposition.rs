//! What `/metrics` shows: the orchestrator's counters and the gauges read
//! when it is scraped (the outbox backlog, stored dead letters, memory and CPU time).

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sagaplane_orchestrator::ports::Backlog;
use sagaplane_orchestrator::Metrics;

use crate::procfs::Process;

/// The registry, with the gauges that are read when scraped.
pub(crate) struct Exposition {
    registry: Registry,
    outbox_unsent: Gauge,
    outbox_oldest_age: Gauge<f64, AtomicU64>,
    dead_letters_stored: Gauge,
    resident_memory: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    cpu_scrape: Mutex<()>,
}

impl Exposition {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let mut registry = Registry::default();
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            resident_memory.clone(),
        );
        let cpu_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time (user and system) this process used",
            cpu_seconds.clone(),
        );
        let ours = registry.sub_registry_with_prefix("sagaplane");
        metrics.register(ours);
        let outbox_unsent = Gauge::default();
        let outbox_oldest_age = Gauge::<f64, AtomicU64>::default();
        let dead_letters_stored = Gauge::default();
        ours.register(
            "outbox_unsent",
            "Commands committed but not yet published",
            outbox_unsent.clone(),
        );
        ours.register(
            "outbox_oldest_unsent_age_seconds",
            "Age of the oldest command not yet published (0 when none)",
            outbox_oldest_age.clone(),
        );
        ours.register(
            "dead_letters_stored",
            "Dead letters in the store",
            dead_letters_stored.clone(),
        );
        Self {
            registry,
            outbox_unsent,
            outbox_oldest_age,
            dead_letters_stored,
            resident_memory,
            cpu_seconds,
            cpu_scrape: Mutex::new(()),
        }
    }

    /// The registry as OpenMetrics text, with the gauges read from `backlog`
    /// (and this process) at `now`.
    pub(crate) fn render(
        &self,
        backlog: &Backlog,
        now: DateTime<Utc>,
    ) -> Result<String, fmt::Error> {
        self.outbox_unsent.set(backlog.outbox_unsent);
        let age = backlog
            .oldest_unsent_at
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        self.outbox_oldest_age.set(age);
        self.dead_letters_stored.set(backlog.dead_letters);
        self.resident_memory
            .set(Process::Own.resident_bytes().map_or(0, |b| b as i64));
        if let Some(seconds) = Process::Own.cpu_seconds() {
            // A counter only goes up: it takes the difference since the last
            // scrape, one scrape at a time (two at once would both add it).
            let _one = self.cpu_scrape.lock().unwrap_or_else(|e| e.into_inner());
            self.cpu_seconds
                .inc_by((seconds - self.cpu_seconds.get()).max(0.0));
        }
        let mut body = String::new();
        encode(&mut body, &self.registry)?;
        Ok(body)
    }
}
