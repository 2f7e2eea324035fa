//! The real binary, killed with SIGKILL and started again on the same database.

use std::time::Duration;

use crate::helpers::{all_marked_sent, fresh_database_url, order};
use crate::server::Server;

#[tokio::test]
async fn the_state_after_a_restart_equals_the_state_before() {
    let db = fresh_database_url();
    let first = Server::start(&db, &[]).await;
    let completed = first
        .start_order("s-1", order("o-1", "c", "SKU-1", 100))
        .await;
    let compensated = first
        .start_order("s-2", order("o-2", "c", "OOS-1", 100))
        .await;
    // Payment never answers: this one is left running, waiting.
    let waiting = first
        .start_order("s-3", order("o-3", "HANG-c", "SKU-1", 100))
        .await;
    assert_eq!(
        first.get(&format!("/v1/sagas/{completed}?wait=10")).await["status"],
        "completed"
    );
    assert_eq!(
        first.get(&format!("/v1/sagas/{compensated}?wait=10")).await["status"],
        "compensated"
    );
    let mut waited = false;
    for _ in 0..250 {
        if first.get(&format!("/v1/sagas/{waiting}")).await["current_step"] == "charge-payment" {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waited, "the third saga reaches charge-payment");
    // Each command marked sent, as the restart will find it.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    assert!(all_marked_sent(&pool).await);
    let mut before = Vec::new();
    for id in [&completed, &compensated, &waiting] {
        before.push(first.snapshot(id).await);
    }
    let port = first.port;
    first.kill();

    let second = Server::start_on(port, &db, &[]).await;
    for (id, expected) in [&completed, &compensated, &waiting]
        .into_iter()
        .zip(&before)
    {
        assert_eq!(&second.snapshot(id).await, expected, "saga {id}");
    }
    assert_eq!(before[2].0["status"], "running");
}

#[tokio::test]
async fn sagas_in_flight_when_the_process_is_killed_finish_after_a_restart() {
    let db = fresh_database_url();
    // Slow participants and short deadlines: the kill lands while replies are pending.
    let first = Server::start(
        &db,
        &[
            ("SAGAPLANE_SIMULATOR__LATENCY_MS", "400"),
            ("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", "1000"),
            ("SAGAPLANE_SAGA__BACKOFF_INITIAL_MS", "50"),
            ("SAGAPLANE_ORCHESTRATOR__TIMER_INTERVAL_MS", "50"),
        ],
    )
    .await;
    let mut sagas = Vec::new();
    for i in 0..10 {
        let (sku, expected) = if i % 3 == 0 {
            ("OOS-1", "compensated")
        } else {
            ("SKU-1", "completed")
        };
        let key = format!("f-{i}");
        sagas.push((
            first.start_order(&key, order(&key, "c", sku, 100)).await,
            expected,
        ));
    }
    let port = first.port;
    first.kill();

    let second = Server::start_on(
        port,
        &db,
        &[("SAGAPLANE_ORCHESTRATOR__TIMER_INTERVAL_MS", "50")],
    )
    .await;
    for (id, expected) in &sagas {
        let saga = second.get(&format!("/v1/sagas/{id}?wait=20")).await;
        assert_eq!(saga["status"], *expected, "saga {id}: {saga}");
        let events = second.get(&format!("/v1/sagas/{id}/events")).await;
        let seqs: Vec<i64> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        let expected_seqs: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, expected_seqs, "no gap and no duplicate in saga {id}");
        assert_eq!(saga["version"], seqs.len() as i64);
    }
}
