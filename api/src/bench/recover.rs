//! `--park N --kill-and-recover`: how long a node takes to be whole again
//! after SIGKILL with N sagas in flight.
//!
//! N sagas are parked (payment never answers); a burst of ordinary sagas is
//! started and, `--kill-after-ms` into it, the server is killed, so that some
//! commands are committed but unsent. After `--down-ms` it is started again
//! under the same node name, and watched until it holds every partition
//! lease, every timer that was due at the restart has fired, and no
//! command is left unsent.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::args::BenchArgs;
use super::load::{drive, park};
use super::report::RecoveryReport;
use super::server::{Server, Target};
use sagaplane_orchestrator::leases::PARTITIONS;

/// Recovery taking longer than this is reported as not recovered.
const GIVE_UP: Duration = Duration::from_secs(300);

pub(super) async fn recover(
    target: &Target,
    server: &mut Server,
    database_url: &str,
    parked: usize,
    args: &BenchArgs,
) -> anyhow::Result<RecoveryReport> {
    park(target, parked, args).await?;
    // No JIT: compiling would take longer than the queries polled here run.
    let options: PgConnectOptions = database_url
        .parse()
        .with_context(|| format!("Not a database URL: {database_url}"))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.options([("jit", "off")]))
        .await
        .with_context(|| format!("Failed to connect to {database_url}"))?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let burst = drive(
        &target.client,
        &target.base,
        &run_id,
        "burst",
        args.sagas,
        args,
        None,
    );
    // Killed mid-burst (or after it, if it was quicker).
    let _ = tokio::time::timeout(Duration::from_millis(args.kill_after_ms), burst).await;
    server.kill();
    let in_flight = count(
        &pool,
        "SELECT count(*) FROM sagas WHERE status IN ('running', 'compensating')",
    )
    .await?;
    let unsent_at_kill = count(&pool, UNSENT).await?;
    tokio::time::sleep(Duration::from_millis(args.down_ms)).await;
    let restart_at: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    let overdue = |pool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sagas WHERE wake_at <= $1")
            .bind(restart_at)
            .fetch_one(pool)
            .await
            .context("Failed to count due timers")
    };
    let overdue_at_restart = overdue(&pool).await?;
    let restarted = Instant::now();
    server.restart().await?;
    let healthy_ms = ms(restarted);
    let (mut leases_ms, mut timers_ms, mut outbox_ms) = (None, None, None);
    while restarted.elapsed() < GIVE_UP {
        // As the new process says: the dead one's leases stay in the table
        // until they expire.
        let held = target.metric("sagaplane_partitions_owned").await;
        if leases_ms.is_none() && held == Some(f64::from(PARTITIONS)) {
            leases_ms = Some(ms(restarted));
        }
        if timers_ms.is_none() && overdue(&pool).await? == 0 {
            timers_ms = Some(ms(restarted));
        }
        // Firing a timer may commit a command: the outbox is whole once the
        // timers have fired and nothing is left unsent.
        if outbox_ms.is_none() && timers_ms.is_some() && count(&pool, UNSENT).await? == 0 {
            outbox_ms = Some(ms(restarted));
        }
        if leases_ms.is_some() && timers_ms.is_some() && outbox_ms.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered_ms = leases_ms
        .zip(timers_ms)
        .zip(outbox_ms)
        .map(|((a, b), c)| a.max(b).max(c));
    Ok(RecoveryReport {
        parked,
        in_flight_at_kill: in_flight,
        unsent_at_kill,
        overdue_at_restart,
        down_ms: args.down_ms,
        healthy_ms,
        leases_ms,
        timers_ms,
        outbox_ms,
        recovered_ms,
    })
}

/// Commands still to publish, neither sent nor given up on: in the outbox,
/// or kept on their events at or above their relay's watermark. (The same as
/// the `commands` view says, without expanding every command in the store:
/// each relay's range is read by index, `OFFSET 0` keeping the planner, which
/// has no statistics of `relays` yet, from scanning every event instead.)
const UNSENT: &str = "SELECT (SELECT count(*) FROM outbox \
                              WHERE sent_at IS NULL AND dead_lettered_at IS NULL) \
     + (SELECT count(*) FROM relays r CROSS JOIN LATERAL ( \
          SELECT e.commands FROM saga_events e \
          WHERE e.relay_pos >= r.published_below AND e.relay_pos < (r.epoch + 1) << 40 \
            AND e.commands IS NOT NULL OFFSET 0) e \
        WHERE NOT EXISTS (SELECT 1 FROM outbox o, jsonb_array_elements(e.commands) x \
                          WHERE o.message_id = (x->>'message_id')::uuid))";

async fn count(pool: &PgPool, sql: &'static str) -> anyhow::Result<i64> {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .with_context(|| format!("Failed: {sql}"))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1_000.0
}
