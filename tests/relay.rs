//! The outbox relay when the participants cannot be reached: retries with
//! back-off until they can, or a dead letter after the budget, redriven by an
//! operator; every command delivered, each applied once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{order, spawn_app_with, TestApp};

async fn short_budget(max_attempts: u32) -> TestApp {
    spawn_app_with(|s| {
        s.orchestrator.publish_max_attempts = max_attempts;
        s.orchestrator.publish_backoff_initial_ms = 20;
        s.orchestrator.publish_backoff_max_ms = 100;
        s.orchestrator.outbox_sweep_interval_ms = 200;
    })
    .await
}

#[actix_web::test]
async fn an_outage_delays_commands_and_loses_none() {
    let app = short_budget(1_000).await;
    app.participants.set_reachable(false);
    let mut ids = Vec::new();
    for i in 0..5 {
        let key = format!("outage-{i}");
        ids.push(
            app.start_order(&key, order(&key, "c-1", "SKU-1", 500))
                .await,
        );
    }
    let retried = app
        .eventually(Duration::from_secs(5), || async {
            app.count(
                "SELECT count(*) FROM commands WHERE publish_attempts >= 2 AND sent_at IS NULL",
            )
            .await
                == 5
        })
        .await;
    assert!(
        retried,
        "each command was tried again while the peer was down"
    );
    let error: String = sqlx::query_scalar("SELECT last_error FROM commands LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(error.contains("unreachable"), "{error}");
    assert!(app.metric("sagaplane_publish_failures_total").await >= 10.0);
    assert_eq!(app.saga(&ids[0]).await["status"], "running");

    app.participants.set_reachable(true);
    for id in &ids {
        assert_eq!(app.settled(id).await["status"], "completed");
        for step in ["reserve-inventory", "charge-payment", "confirm-order"] {
            assert_eq!(app.participants.effects(&format!("{id}:{step}")), 1);
        }
    }
    assert!(app.all_marked_sent().await);
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 0);
}

#[actix_web::test]
async fn past_its_budget_a_command_is_a_dead_letter_until_redriven() {
    let app = short_budget(3).await;
    app.participants.set_reachable(false);
    let id = app
        .start_order("budget-1", order("budget-1", "c-1", "SKU-1", 500))
        .await;
    let dead = app
        .eventually(Duration::from_secs(10), || async {
            app.count("SELECT count(*) FROM commands WHERE dead_lettered_at IS NOT NULL")
                .await
                == 1
        })
        .await;
    assert!(dead, "the command was dead-lettered");
    assert_eq!(
        app.count("SELECT publish_attempts::bigint FROM commands")
            .await,
        3
    );
    assert_eq!(
        app.metric("sagaplane_commands_dead_lettered_total").await,
        1.0
    );
    let page: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
    let letter = &page["items"][0];
    assert_eq!(letter["kind"], "outbox");
    assert_eq!(letter["channel"], "outbox:inventory");
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .contains("after 3 attempt(s)"));
    let command: Value = serde_json::from_str(letter["raw_text"].as_str().unwrap()).unwrap();
    assert_eq!(command["type"], "order.inventory.reserve.v1");
    assert_eq!(command["subject"], id.as_str());
    // The sweep leaves it alone: nothing more is tried.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT publish_attempts::bigint FROM commands")
            .await,
        3
    );

    // The participants are back; an admin redrives the command.
    app.participants.set_reachable(true);
    let letter_id = letter["id"].as_i64().unwrap();
    let response = app
        .client
        .post(format!(
            "{}/v1/dead-letters/{letter_id}/redrive",
            app.address
        ))
        .json(&json!({ "reason": "inventory is back" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["outcome"], "requeued");
    assert_eq!(app.settled(&id).await["status"], "completed");
    assert_eq!(
        app.participants.effects(&format!("{id}:reserve-inventory")),
        1
    );
}
