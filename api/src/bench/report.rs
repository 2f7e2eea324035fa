//! What a bench run found, as text for people or JSON for machines.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) sagas: usize,
    pub(super) concurrency: usize,
    pub(super) fail_pct: u8,
    pub(super) seconds: f64,
    pub(super) sagas_per_second: f64,
    pub(super) latency_ms: Percentiles,
    pub(super) errors: usize,
    pub(super) commits_per_saga: f64,
    pub(super) rows_written_per_saga: f64,
    pub(super) server_rss_mib: Option<f64>,
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
        writeln!(
            f,
            "{} order sagas, {} clients, {} % declined, in {:.2} s",
            self.sagas, self.concurrency, self.fail_pct, self.seconds
        )?;
        writeln!(f, "  throughput   {:.0} sagas/s", self.sagas_per_second)?;
        writeln!(
            f,
            "  latency      p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            l.p50, l.p95, l.p99, l.max
        )?;
        writeln!(f, "  errors       {}", self.errors)?;
        writeln!(
            f,
            "  database     {:.2} commits and {:.1} rows written per saga",
            self.commits_per_saga, self.rows_written_per_saga
        )?;
        writeln!(f, "  server RSS   {}", mib(self.server_rss_mib))
    }
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
