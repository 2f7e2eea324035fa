//! What `sagaplane bench` is asked to do.

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Sagas to measure.
    #[arg(long, default_value_t = 2_000)]
    pub(super) sagas: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    pub(super) concurrency: usize,
    /// Share of orders (0–100) that payment declines.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(super) fail_pct: u8,
    /// Start each saga, then long-poll it: two requests per saga instead of
    /// one `Prefer: wait` start.
    #[arg(long)]
    pub(super) two_requests: bool,
    /// Before measuring, fill the store with this many finished order sagas
    /// (copies of one real one, created over the past 30 days).
    #[arg(long, default_value_t = 0)]
    pub(super) preload: u64,
    /// Sagas run first and left out of the figures.
    #[arg(long, default_value_t = 200)]
    pub(super) warmup: usize,
    /// Do not run ANALYZE on the database after the warm-up (`--preload`
    /// analyzes what it wrote either way). By default the tables are analyzed
    /// then, as autovacuum would soon do on a running server: otherwise the
    /// server's connections keep the plans they made while the tables were
    /// empty (sequential scans of growing tables).
    #[arg(long)]
    pub(super) no_analyze: bool,
    /// Instead of the workload: start this many sagas whose payment never answers
    /// and report the server's memory.
    #[arg(long)]
    pub(super) park: Option<usize>,
    /// With --park: the started server's idle timeout for saga actors; the
    /// default keeps every parked saga's actor alive (the worst case).
    #[arg(long, default_value_t = 3_600_000)]
    pub(super) park_idle_ms: u64,
    /// Start the server with retention on: finished sagas are deleted once
    /// finished this many seconds ago (`retention.finished_after_seconds`).
    #[arg(long, conflicts_with = "url")]
    pub(super) retention_seconds: Option<u64>,
    /// With --park: then start --sagas ordinary sagas, SIGKILL the server
    /// --kill-after-ms into them, start it again after --down-ms, and report
    /// how long until every lease is held, every due timer fired and every
    /// unsent command published.
    #[arg(long, requires = "park", conflicts_with = "url")]
    pub(super) kill_and_recover: bool,
    #[arg(long, default_value_t = 1_000)]
    pub(super) kill_after_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub(super) down_ms: u64,
    /// The started server's step timeout (with --park, default one day), so
    /// that parked sagas' timers can fall due while it is down.
    #[arg(long, conflicts_with = "url")]
    pub(super) step_timeout_ms: Option<u64>,
    /// A running server to drive; without it, bench starts `sagaplane serve` on a
    /// fresh database `sagaplane_bench` and stops it afterwards.
    #[arg(long)]
    pub(super) url: Option<String>,
    /// With --url: the server's process id, to read its CPU time and memory
    /// from /proc instead of its /metrics.
    #[arg(long, requires = "url")]
    pub(super) server_pid: Option<u32>,
    /// The PostgreSQL server (without a database name) for the started server and
    /// the statistics; with --url, the server's own database URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub(super) database: String,
    /// The database a started server gets; dropped and made anew each run.
    #[arg(long, default_value = "sagaplane_bench")]
    pub(super) bench_database: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(super) json: bool,
}
