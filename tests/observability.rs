//! `/metrics` moves with the work; `/healthz` and `/readyz` tell the truth.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use sagaplane_orchestrator::Inbound;
use sagaplane_sagas::{Outcome, Reply, SagaId};

use crate::helpers::{assert_problem, order, spawn_app};

#[actix_web::test]
async fn metrics_move_when_sagas_complete_and_compensate() {
    let app = spawn_app().await;
    let completed = r#"sagaplane_sagas_settled_total{saga_type="order",status="completed"}"#;
    let compensated = r#"sagaplane_sagas_settled_total{saga_type="order",status="compensated"}"#;
    let started = r#"sagaplane_sagas_started_total{saga_type="order"}"#;
    assert_eq!(app.metric(completed).await, 0.0);

    let ok = app
        .start_order("m-1", order("o-1", "c", "SKU-1", 100))
        .await;
    let oos = app
        .start_order("m-2", order("o-2", "c", "OOS-1", 100))
        .await;
    app.settled(&ok).await;
    app.settled(&oos).await;

    assert_eq!(app.metric(started).await, 2.0);
    assert_eq!(app.metric(completed).await, 1.0);
    assert_eq!(app.metric(compensated).await, 1.0);
    // 3 commands for the completed saga, 2 for the compensated one.
    let published = app
        .eventually(Duration::from_secs(5), || async {
            app.metric("sagaplane_commands_published_total").await == 5.0
        })
        .await;
    assert!(published, "every command is counted once published");
    // 4 steps + 3 steps were committed.
    assert_eq!(
        app.metric("sagaplane_store_commit_seconds_count").await,
        7.0
    );
    // The same 7 steps went through the group committer, in 1 to 7 batches.
    let batches = app.metric("sagaplane_store_batch_size_count").await;
    assert!((1.0..=7.0).contains(&batches), "{batches} batches");
    assert_eq!(app.metric("sagaplane_store_batch_size_sum").await, 7.0);
    assert_eq!(app.metric("sagaplane_partitions_owned").await, 64.0);
    // Unsent until the relay's watermark passes them (written every 50 ms).
    let passed = app
        .eventually(Duration::from_secs(5), || async {
            app.metric("sagaplane_outbox_unsent").await == 0.0
        })
        .await;
    assert!(passed, "published commands leave the backlog");
    // Both sagas reserved; one went on, the other was cancelled.
    for (step, count) in [
        ("reserve-inventory", 2.0),
        ("charge-payment", 1.0),
        ("confirm-order", 1.0),
        ("cancel-order", 1.0),
    ] {
        let series = format!(r#"sagaplane_step_seconds_count{{saga_type="order",step="{step}"}}"#);
        assert_eq!(app.metric(&series).await, count, "{series}");
    }
    assert!(app.metric("process_resident_memory_bytes").await > 1_000_000.0);
}

#[actix_web::test]
async fn duplicates_and_dead_letters_are_counted() {
    let app = spawn_app().await;
    let id = app
        .start_order("m-3", order("o-3", "c", "SKU-1", 100))
        .await;
    app.settled(&id).await;
    let reply = Reply {
        step: "reserve-inventory".into(),
        attempt: 1,
        outcome: Outcome::Succeeded,
        at: Utc::now(),
        result: None,
    };
    let inbound = |saga: &str, message: &str| Inbound {
        channel: "test".into(),
        message_id: message.into(),
        saga_id: saga.parse().unwrap(),
        reply: reply.clone(),
        raw: b"{}".to_vec(),
        traceparent: None,
    };
    app.orchestrator
        .receive(inbound(&id, "late"))
        .await
        .unwrap();
    app.orchestrator
        .receive(inbound(&id, "late"))
        .await
        .unwrap();
    let stranger = SagaId::from_uuid(uuid::Uuid::new_v4()).to_string();
    app.orchestrator
        .receive(inbound(&stranger, "lost"))
        .await
        .unwrap();

    assert_eq!(app.metric("sagaplane_inputs_ignored_total").await, 1.0);
    assert_eq!(app.metric("sagaplane_inbox_duplicates_total").await, 1.0);
    assert_eq!(app.metric("sagaplane_dead_letters_total").await, 1.0);
    assert_eq!(app.metric("sagaplane_dead_letters_stored").await, 1.0);
}

#[actix_web::test]
async fn readiness_needs_a_current_schema() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .eventually(Duration::from_secs(5), || async {
            app.get("/readyz").await.status() == StatusCode::OK
        })
        .await;
    assert!(ready, "ready once start-up recovery is done");

    // The schema falls behind what the binary expects.
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&app.pool)
        .await
        .unwrap();
    let problem = assert_problem(app.get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("migrations not applied"),
        "{problem}"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "still alive"
    );
}
