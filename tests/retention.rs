//! Retention: finished sagas are deleted with their rows once finished long
//! enough ago; running ones, recent ones and dead letters stay.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{order, spawn_app_with};

#[actix_web::test]
async fn finished_sagas_are_deleted_with_their_rows_once_old_enough() {
    let app = spawn_app_with(|s| {
        s.retention.finished_after_seconds = Some(2);
        s.retention.interval_ms = 100;
        // Two per transaction: four finished sagas take several.
        s.retention.batch = 2;
    })
    .await;
    let app = &app;
    let began = std::time::Instant::now();
    let mut finished = Vec::new();
    for (key, amount) in [
        ("r-1", 500),
        ("r-2", 500),
        ("r-3", 500),
        ("r-declined", 5_000_000),
    ] {
        finished.push(
            app.start_order(key, order(key, "c-1", "SKU-1", amount))
                .await,
        );
    }
    // `HANG-`: inventory never answers; this one keeps running.
    let running = app
        .start_order("r-running", order("r-running", "c-1", "HANG-1", 500))
        .await;
    for id in &finished {
        app.settled(id).await;
    }
    let rows = |table: &'static str| async move {
        app.count(&format!("SELECT count(*) FROM {table}")).await
    };
    // Finished just now: nothing is old enough yet (unless the machine was
    // so slow that two seconds have passed since the first one finished).
    let sagas = rows("sagas").await;
    if began.elapsed() < Duration::from_millis(1_500) {
        assert_eq!(sagas, 5);
    }
    let dead_letters = rows("dead_letters").await;

    let gone = app
        .eventually(Duration::from_secs(15), || async {
            app.count("SELECT count(*) FROM sagas").await == 1
        })
        .await;
    assert!(gone, "the finished sagas were not deleted");
    let only_running = |table: &'static str| {
        let running = running.clone();
        async move {
            app.count(&format!(
                "SELECT count(*) FROM {table} WHERE saga_id <> '{running}'::uuid"
            ))
            .await
        }
    };
    for table in ["saga_events", "outbox", "inbox"] {
        assert_eq!(only_running(table).await, 0, "{table} rows left behind");
    }
    assert!(
        rows("saga_events").await >= 1,
        "the running saga keeps its history"
    );
    assert_eq!(rows("dead_letters").await, dead_letters);
    assert_eq!(
        app.metric("sagaplane_retention_sagas_deleted_total").await,
        4.0
    );
    assert_eq!(
        app.get(&format!("/v1/sagas/{}", finished[0]))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.saga(&running).await["status"], "running");
    // The business key is free again.
    app.start_order("r-1", order("r-1", "c-1", "SKU-1", 500))
        .await;
}
