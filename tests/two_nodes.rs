//! Two `sagaplane serve` processes on one database share the partitions; one
//! is killed and the other takes its partitions over and finishes its sagas.
//! No saga takes a step twice and no effect is applied twice.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::helpers::{fresh_database_url, order};
use crate::server::{assert_histories_whole, assert_no_effect_twice, Server};

const ENV: &[(&str, &str)] = &[
    ("SAGAPLANE_SIMULATOR__DURABLE_MEMORY", "true"),
    ("SAGAPLANE_SIMULATOR__LATENCY_MS", "200"),
    ("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", "1000"),
    ("SAGAPLANE_SAGA__STEP_MAX_ATTEMPTS", "20"),
    ("SAGAPLANE_SAGA__BACKOFF_INITIAL_MS", "50"),
    ("SAGAPLANE_SAGA__BACKOFF_MAX_MS", "200"),
    ("SAGAPLANE_ORCHESTRATOR__TIMER_INTERVAL_MS", "50"),
    ("SAGAPLANE_ORCHESTRATOR__OUTBOX_SWEEP_INTERVAL_MS", "300"),
    ("SAGAPLANE_CLUSTER__LEASE_TTL_MS", "1500"),
];

async fn owners(pool: &PgPool) -> Vec<(Option<String>, i64)> {
    sqlx::query_as(
        "SELECT owner, count(*) FROM partition_leases WHERE expires_at > now() \
         GROUP BY owner ORDER BY owner",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_work_and_one_finishes_what_the_other_left() {
    let db = fresh_database_url();
    let a = Server::start(
        &db,
        &[&[("SAGAPLANE_CLUSTER__NODE_ID", "node-a")], ENV].concat(),
    )
    .await;
    let b = Server::start(
        &db,
        &[&[("SAGAPLANE_CLUSTER__NODE_ID", "node-b")], ENV].concat(),
    )
    .await;
    let pool = PgPool::connect(&db).await.unwrap();

    // The two split the 64 partitions between them.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let held = owners(&pool).await;
        if held == [(Some("node-a".into()), 32), (Some("node-b".into()), 32)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partitions were not shared: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Sagas started on both; A is killed while its participants (slow, 200 ms
    // a reply) still owe answers, so its sagas are left mid-way.
    let mut ids = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { &a } else { &b };
        let key = format!("n-{i}");
        let (sku, status) = if i % 5 == 0 {
            ("OOS-1", "compensated")
        } else {
            ("SKU-1", "completed")
        };
        ids.push((
            node.start_order(&key, order(&key, "c", sku, 100)).await,
            status,
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.kill();

    // B takes over A's partitions once their leases run out, and with them
    // the deadlines of A's sagas: every saga finishes.
    for (id, status) in &ids {
        let saga: Value = b.get(&format!("/v1/sagas/{id}?wait=20")).await;
        assert_eq!(saga["status"], *status, "saga {id}: {saga}");
    }
    assert_eq!(owners(&pool).await, [(Some("node-b".into()), 64)]);

    assert_no_effect_twice(&pool).await;
    assert_histories_whole(&pool).await;
    // Some of A's sagas really were left to B: their steps timed out on A's
    // lost replies and B's timers sent them again.
    let timed_out: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE data->>'cause' = 'timed_out'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(timed_out > 0, "nothing was left mid-way by the killed node");
}
