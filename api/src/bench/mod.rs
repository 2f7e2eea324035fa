//! `sagaplane bench`: the fixed order-saga workload, driven over HTTP.
//!
//! N sagas are started by C concurrent clients; each client starts a saga with
//! `Prefer: wait` and so gets its outcome in the same answer (or, with
//! `--two-requests`, starts it and then long-polls it with `?wait=`), then
//! starts the next. `fail_pct` % of orders are declined by payment (then
//! inventory is released and the order cancelled). Reports sagas/s,
//! start-to-terminal latency percentiles, errors, and what a saga costs: CPU
//! time of the server and of PostgreSQL (from /proc), commits, rows and index
//! entries written, WAL bytes (from PostgreSQL's statistics views).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

mod cost;
mod preload;
mod recover;
mod report;
mod server;

use cost::{cost, Counters, Cpu};
use report::{percentile, print, ParkReport, Percentiles, QueryTimes, Report, Timing};
use server::{Server, Target};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Sagas to measure.
    #[arg(long, default_value_t = 2_000)]
    sagas: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Share of orders (0–100) that payment declines.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    fail_pct: u8,
    /// Start each saga, then long-poll it: two requests per saga instead of
    /// one `Prefer: wait` start.
    #[arg(long)]
    two_requests: bool,
    /// Before measuring, fill the store with this many finished order sagas
    /// (copies of one real one, created over the past 30 days).
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Sagas run first and left out of the figures.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Instead of the workload: start this many sagas whose payment never answers
    /// and report the server's memory.
    #[arg(long)]
    park: Option<usize>,
    /// With --park: the started server's idle timeout for saga actors; the
    /// default keeps every parked saga's actor alive (the worst case).
    #[arg(long, default_value_t = 3_600_000)]
    park_idle_ms: u64,
    /// Start the server with retention on: finished sagas are deleted once
    /// finished this many seconds ago (`retention.finished_after_seconds`).
    #[arg(long, conflicts_with = "url")]
    retention_seconds: Option<u64>,
    /// With --park: then start --sagas ordinary sagas, SIGKILL the server
    /// --kill-after-ms into them, start it again after --down-ms, and report
    /// how long until every lease is held, every due timer fired and every
    /// unsent command published.
    #[arg(long, requires = "park", conflicts_with = "url")]
    kill_and_recover: bool,
    #[arg(long, default_value_t = 1_000)]
    kill_after_ms: u64,
    #[arg(long, default_value_t = 0)]
    down_ms: u64,
    /// The started server's step timeout (with --park, default one day), so
    /// that parked sagas' timers can fall due while it is down.
    #[arg(long, conflicts_with = "url")]
    step_timeout_ms: Option<u64>,
    /// A running server to drive; without it, bench starts `sagaplane serve` on a
    /// fresh database `sagaplane_bench` and stops it afterwards.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the server's process id, to read its CPU time and memory
    /// from /proc instead of its /metrics.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// The PostgreSQL server (without a database name) for the started server and
    /// the statistics; with --url, the server's own database URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    database: String,
    /// The database a started server gets; dropped and made anew each run.
    #[arg(long, default_value = "sagaplane_bench")]
    bench_database: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The server's count of sagas its retention deleted.
const RETENTION_DELETED: &str = "sagaplane_retention_sagas_deleted_total";

/// How long after its last transaction a PostgreSQL backend's statistics are
/// surely published.
const STATISTICS_DELAY: Duration = Duration::from_millis(11_000);

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // Dropping `server` stops the one bench started, whatever happens below.
    let (base, database_url, server) = match &args.url {
        Some(url) => (
            url.trim_end_matches('/').to_owned(),
            args.database.clone(),
            None,
        ),
        None => {
            let url = format!(
                "{}/{}",
                args.database.trim_end_matches('/'),
                args.bench_database
            );
            let server = Server::start(&args.database, &url, &server_env(&args)).await?;
            (server.base.clone(), url, Some(server))
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .build()?;
    let target = Target {
        client,
        base,
        pid: server.as_ref().map(|s| s.child.id()).or(args.server_pid),
    };
    let mut server = server;
    let measure = async {
        match (args.park, server.as_mut()) {
            (Some(n), Some(server)) if args.kill_and_recover => {
                let report = recover::recover(&target, server, &database_url, n, &args).await?;
                print(&report, args.json)
            }
            (Some(n), _) => print(&park(&target, n, &args).await?, args.json),
            (None, _) => print(&workload(&target, &database_url, &args).await?, args.json),
        }
    };
    // On Ctrl-C, return (and so stop the started server) instead of dying.
    tokio::select! {
        result = measure => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

/// The settings a started server gets for this run.
fn server_env(args: &BenchArgs) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if args.park.is_some() {
        // Parked sagas must not (unless asked) time out, nor (by default) be passivated.
        env.push(("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", "86400000".to_owned()));
        env.push((
            "SAGAPLANE_ORCHESTRATOR__IDLE_TIMEOUT_MS",
            args.park_idle_ms.to_string(),
        ));
    }
    if let Some(ms) = args.step_timeout_ms {
        env.push(("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", ms.to_string()));
    }
    if let Some(seconds) = args.retention_seconds {
        env.push((
            "SAGAPLANE_RETENTION__FINISHED_AFTER_SECONDS",
            seconds.to_string(),
        ));
    }
    env
}

async fn workload(target: &Target, database_url: &str, args: &BenchArgs) -> anyhow::Result<Report> {
    let (client, base) = (&target.client, target.base.as_str());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let stats_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .with_context(|| format!("Failed to connect to {database_url} for statistics"))?;
    let preload_seconds = if args.preload > 0 {
        let template = start_order(
            client,
            base,
            &format!("template-{run_id}"),
            "bench",
            2_599,
            Some(30),
        )
        .await?;
        let id = template["id"].as_str().context("start answer without id")?;
        let bar = progress(args.preload, args.json);
        let seconds =
            preload::preload(&stats_pool, id.parse()?, args.preload as i64, bar.as_ref()).await?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Some(seconds)
    } else {
        None
    };
    if args.warmup > 0 {
        drive(client, base, &run_id, "warmup", args.warmup, args, None).await;
    }
    // A backend publishes what it did at the end of a transaction at most once
    // a second, and else after 10 s idle (PostgreSQL 15's intervals): wait so
    // that neither the work before the run nor the run's own is left out.
    tokio::time::sleep(STATISTICS_DELAY).await;
    let before = Counters::read(&stats_pool).await?;
    let deleted_before = target.metric(RETENTION_DELETED).await;
    let cpu_before = Cpu::read(&stats_pool, target.cpu_seconds().await).await;
    let bar = progress(args.sagas as u64, args.json);
    let started = Instant::now();
    let outcomes = drive(client, base, &run_id, "run", args.sagas, args, bar.as_ref()).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = Cpu::read(&stats_pool, target.cpu_seconds().await).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tokio::time::sleep(STATISTICS_DELAY).await;
    let after = Counters::read(&stats_pool).await?;
    let deleted_after = target.metric(RETENTION_DELETED).await;
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().copied())
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let errors = outcomes.iter().filter(|o| o.is_err()).count();
    if let Some(e) = outcomes.iter().find_map(|o| o.as_ref().err()) {
        eprintln!("first error: {e:#}");
    }
    Ok(Report {
        sagas: args.sagas,
        concurrency: args.concurrency,
        fail_pct: args.fail_pct,
        requests_per_saga: if args.two_requests { 2 } else { 1 },
        seconds,
        sagas_per_second: args.sagas as f64 / seconds,
        latency_ms: Percentiles {
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or(0.0),
        },
        errors,
        cost: cost(args.sagas, (&before, &after), (cpu_before, cpu_after)),
        retention_deleted: deleted_after.zip(deleted_before).map(|(a, b)| a - b),
        preloaded: args.preload,
        preload_seconds,
        queries_ms: queries(target, &format!("bench-{run_id}-run-0")).await?,
        server_rss_mib: target.rss_mib().await,
    })
}

/// Starts `count` sagas over `concurrency` clients; each outcome is the
/// start-to-terminal latency in ms, or why it failed.
async fn drive(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    phase: &str,
    count: usize,
    args: &BenchArgs,
    bar: Option<&ProgressBar>,
) -> Vec<anyhow::Result<f64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let clients = (0..args.concurrency.max(1)).map(|_| {
        let next = next.clone();
        async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return outcomes;
                }
                let declined = (i % 100) < args.fail_pct as usize;
                let key = format!("bench-{run_id}-{phase}-{i}");
                let outcome = one_saga(client, base, &key, declined, args.two_requests).await;
                outcomes.push(outcome);
                if let Some(bar) = bar {
                    bar.inc(1);
                }
            }
        }
    });
    join_all(clients).await.into_iter().flatten().collect()
}

/// Starts one order saga; its answer, which must be `201 Created`. With
/// `prefer_wait`, the answer comes once the saga settled (or after that many
/// seconds).
async fn start_order(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    customer: &str,
    amount_cents: i64,
    prefer_wait: Option<u64>,
) -> anyhow::Result<Value> {
    let body = json!({
        "saga_type": "order",
        "business_key": key,
        "input": {
            "order_id": key, "customer_id": customer,
            "items": [{"sku": "BENCH-1", "qty": 1}],
            "amount_cents": amount_cents, "currency": "EUR"
        }
    });
    let mut request = client.post(format!("{base}/v1/sagas")).json(&body);
    if let Some(seconds) = prefer_wait {
        request = request.header("Prefer", format!("wait={seconds}"));
    }
    let response = request.send().await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!(
            "start answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    Ok(response.json().await?)
}

/// How long the operators' reads take, in ms: the first call and the median
/// of five more. `key`: a business key of this run.
async fn queries(target: &Target, key: &str) -> anyhow::Result<QueryTimes> {
    let time = |path: String| async move {
        let mut took = Vec::new();
        for _ in 0..6 {
            let started = Instant::now();
            target
                .client
                .get(format!("{}{path}", target.base))
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("GET {path}"))?;
            took.push(started.elapsed().as_secs_f64() * 1_000.0);
        }
        let first = took.remove(0);
        took.sort_by(f64::total_cmp);
        Ok::<_, anyhow::Error>(Timing {
            first,
            median: percentile(&took, 0.5),
        })
    };
    Ok(QueryTimes {
        stats: time("/v1/stats".into()).await?,
        newest_page: time("/v1/sagas?limit=50".into()).await?,
        stuck_page: time("/v1/sagas?stuck_for=1m&limit=50".into()).await?,
        by_business_key: time(format!("/v1/sagas?saga_type=order&business_key={key}")).await?,
    })
}

/// One saga from its start to its end; its latency in ms.
async fn one_saga(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    declined: bool,
    two_requests: bool,
) -> anyhow::Result<f64> {
    const WAIT_SECONDS: u64 = 30;
    let amount = if declined { 5_000_000 } else { 2_599 };
    let started = Instant::now();
    let prefer_wait = (!two_requests).then_some(WAIT_SECONDS);
    let mut saga = start_order(client, base, key, "bench", amount, prefer_wait).await?;
    if two_requests {
        let id = saga["id"].as_str().context("start answer without id")?;
        saga = client
            .get(format!("{base}/v1/sagas/{id}?wait={WAIT_SECONDS}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
    }
    let elapsed = started.elapsed().as_secs_f64() * 1_000.0;
    let expected = if declined { "compensated" } else { "completed" };
    if saga["status"] != expected {
        bail!(
            "saga {} ended {} instead of {expected}",
            saga["id"],
            saga["status"]
        );
    }
    Ok(elapsed)
}

async fn park(target: &Target, n: usize, args: &BenchArgs) -> anyhow::Result<ParkReport> {
    let (client, base) = (&target.client, target.base.as_str());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let bar = progress(n as u64, args.json);
    let started = Instant::now();
    let clients = (0..args.concurrency.max(1)).map(|_| {
        let next = next.clone();
        let bar = bar.clone();
        let run_id = run_id.clone();
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                // Payment never answers a HANG- customer.
                let key = format!("park-{run_id}-{i}");
                start_order(client, base, &key, "HANG-park", 100, None).await?;
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
        }
    });
    for result in join_all(clients).await {
        result?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the last replies (inventory answers at once) land before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(ParkReport {
        parked: n,
        seconds,
        idle_timeout_ms: target.pid.map(|_| args.park_idle_ms),
        server_rss_mib: target.rss_mib().await,
    })
}

fn progress(len: u64, quiet: bool) -> Option<ProgressBar> {
    if quiet {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} sagas {per_sec} eta {eta}")
            .expect("a valid progress template"),
    );
    Some(bar)
}
