//! What a bench run found, as text for people or JSON for machines.

use serde::Serialize;

use super::cost::Cost;

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) sagas: usize,
    pub(super) concurrency: usize,
    pub(super) fail_pct: u8,
    /// 1: a `Prefer: wait` start; 2: a start, then a long poll.
    pub(super) requests_per_saga: u8,
    /// Whether the database was analyzed after the warm-up.
    pub(super) analyzed: bool,
    pub(super) seconds: f64,
    pub(super) sagas_per_second: f64,
    pub(super) latency_ms: Percentiles,
    pub(super) errors: usize,
    pub(super) cost: Cost,
    /// Finished sagas the server's retention deleted during the run.
    pub(super) retention_deleted: Option<f64>,
    /// Finished sagas written into the store before the run.
    pub(super) preloaded: u64,
    pub(super) preload_seconds: Option<f64>,
    /// The operators' reads, after the run.
    pub(super) queries_ms: QueryTimes,
    pub(super) server_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct QueryTimes {
    pub(super) stats: Timing,
    pub(super) newest_page: Timing,
    pub(super) stuck_page: Timing,
    pub(super) by_business_key: Timing,
}

/// The first call's time and the median of five more, in ms.
#[derive(Debug, Serialize)]
pub(super) struct Timing {
    pub(super) first: f64,
    pub(super) median: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct Percentiles {
    pub(super) p50: f64,
    pub(super) p95: f64,
    pub(super) p99: f64,
    pub(super) max: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct ParkReport {
    pub(super) parked: usize,
    pub(super) seconds: f64,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) server_rss_mib: Option<f64>,
}

/// After SIGKILL with sagas in flight: what there was to recover, and the
/// ms from the restart until each part of it was done.
#[derive(Debug, Serialize)]
pub(super) struct RecoveryReport {
    pub(super) parked: usize,
    /// Running or compensating sagas when the server was killed.
    pub(super) in_flight_at_kill: i64,
    /// Commands committed but not published when it was killed.
    pub(super) unsent_at_kill: i64,
    /// Sagas whose timer was due when it was started again.
    pub(super) overdue_at_restart: i64,
    pub(super) down_ms: u64,
    /// Until `/healthz` answered.
    pub(super) healthy_ms: f64,
    /// Until it held every partition lease.
    pub(super) leases_ms: Option<f64>,
    /// Until every timer due at the restart had fired.
    pub(super) timers_ms: Option<f64>,
    /// Until, the due timers fired, no command was left unsent.
    pub(super) outbox_ms: Option<f64>,
    /// The longest of the three; none if one of them did not finish in 300 s.
    pub(super) recovered_ms: Option<f64>,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t =
            |v: Option<f64>| v.map_or_else(|| "not within 300 s".into(), |m| format!("{m:.0} ms"));
        writeln!(
            f,
            "killed with {} sagas in flight ({} parked), {} commands unsent; down {} ms; {} timers due at the restart",
            self.in_flight_at_kill, self.parked, self.unsent_at_kill, self.down_ms, self.overdue_at_restart
        )?;
        writeln!(
            f,
            "  healthy      {:.0} ms after the restart",
            self.healthy_ms
        )?;
        writeln!(f, "  leases       {}", t(self.leases_ms))?;
        writeln!(f, "  due timers   {}", t(self.timers_ms))?;
        writeln!(f, "  outbox       {}", t(self.outbox_ms))?;
        writeln!(f, "  recovered    {}", t(self.recovered_ms))
    }
}

pub(super) fn print<T: Serialize + std::fmt::Display>(
    report: &T,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

pub(super) fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".into(), |m| format!("{m:.0} MiB"))
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency_ms;
        let how = if self.requests_per_saga == 1 {
            "one request each (Prefer: wait)"
        } else {
            "two requests each (start, then ?wait=)"
        };
        writeln!(
            f,
            "{} order sagas, {} clients, {} % declined, {how}, in {:.2} s{}",
            self.sagas,
            self.concurrency,
            self.fail_pct,
            self.seconds,
            if self.analyzed {
                ""
            } else {
                " (tables not analyzed)"
            }
        )?;
        writeln!(f, "  throughput   {:.0} sagas/s", self.sagas_per_second)?;
        writeln!(
            f,
            "  latency      p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            l.p50, l.p95, l.p99, l.max
        )?;
        writeln!(f, "  errors       {}", self.errors)?;
        let c = &self.cost;
        let cpu = &c.cpu_ms_per_saga;
        writeln!(
            f,
            "  CPU per saga server {}  PostgreSQL {}  together {}  (bench client {})",
            ms(cpu.server),
            ms(cpu.postgres),
            ms(cpu.total),
            ms(cpu.client)
        )?;
        writeln!(
            f,
            "  database     per saga: {:.2} commits, {:.1} rows and ≤ {:.1} index entries written, {} of WAL",
            c.commits_per_saga,
            c.rows_written_per_saga,
            c.index_entries_per_saga,
            c.wal_bytes_per_saga
                .map_or_else(|| "unknown".into(), |b| format!("{b:.0} bytes"))
        )?;
        for (table, rows) in &c.rows_by_table {
            writeln!(
                f,
                "    {table:<18} +{:.2} inserted  ~{:.2} updated ({:.2} heap-only)  -{:.2} deleted",
                rows.inserted, rows.updated, rows.hot_updated, rows.deleted
            )?;
        }
        if let Some(n) = self.retention_deleted.filter(|n| *n > 0.0) {
            writeln!(
                f,
                "  retention    {n:.0} finished sagas deleted during the run"
            )?;
        }
        if let Some(s) = self.preload_seconds {
            writeln!(
                f,
                "  store        {} finished sagas preloaded in {s:.1} s",
                self.preloaded
            )?;
        }
        let q = &self.queries_ms;
        writeln!(
            f,
            "  reads (first / median ms)  stats {}  newest 50 {}  stuck 50 {}  by key {}",
            q.stats, q.newest_page, q.stuck_page, q.by_business_key
        )?;
        writeln!(f, "  server RSS   {}", mib(self.server_rss_mib))
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} / {:.1}", self.first, self.median)
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".into(), |m| format!("{m:.2} ms"))
}

impl std::fmt::Display for ParkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} sagas parked in {:.1} s", self.parked, self.seconds)?;
        if let Some(ms) = self.idle_timeout_ms {
            writeln!(f, "  actor idle timeout  {ms} ms")?;
        }
        writeln!(f, "  server RSS          {}", mib(self.server_rss_mib))
    }
}

pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
