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

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;

mod args;
mod cost;
mod load;
mod preload;
mod recover;
mod report;
mod server;

pub use args::BenchArgs;
use cost::{cost, Counters, Cpu};
use load::{drive, park, progress, start_order};
use report::{percentile, print, Percentiles, QueryTimes, Report, Timing};
use server::{Server, Target};

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
    if !args.no_analyze {
        // Also invalidates the plans the server's connections have cached.
        sqlx::query("ANALYZE")
            .execute(&stats_pool)
            .await
            .context("Failed to analyze the database")?;
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
    let deleted_after = target.metric(RETENTION_DELETED).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tokio::time::sleep(STATISTICS_DELAY).await;
    let after = Counters::read(&stats_pool).await?;
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
        analyzed: !args.no_analyze,
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
