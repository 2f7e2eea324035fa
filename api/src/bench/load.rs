//! The load: order sagas started over HTTP by concurrent clients, each to
//! its end, or parked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::args::BenchArgs;
use super::report::ParkReport;
use super::server::Target;

/// Starts `count` sagas over `concurrency` clients; each outcome is the
/// start-to-terminal latency in ms, or why it failed.
pub(super) async fn drive(
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
pub(super) async fn start_order(
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

pub(super) async fn park(
    target: &Target,
    n: usize,
    args: &BenchArgs,
) -> anyhow::Result<ParkReport> {
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

pub(super) fn progress(len: u64, quiet: bool) -> Option<ProgressBar> {
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
