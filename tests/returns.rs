//! The shipped return saga: approve, refund (the pivot), restock; and a reply
//! whose result breaks its step's schema, kept as a dead letter.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use sagaplane_adapters::SimulatorRule;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// A return start request without a business key: the return's id is it.
fn return_request(return_id: &str, sku: &str) -> Value {
    json!({
        "saga_type": "return",
        "input": {
            "return_id": return_id,
            "order_id": "o-1",
            "customer_id": "c-1",
            "items": [{ "sku": sku, "qty": 1 }],
            "amount_cents": 2500,
            "currency": "EUR"
        }
    })
}

/// Short back-offs, so that the restock's five attempts take little time.
async fn fast_retries_app() -> TestApp {
    spawn_app_with(|s| {
        s.saga.backoff_initial_ms = 20;
        s.saga.backoff_max_ms = 40;
        s.orchestrator.timer_interval_ms = 20;
    })
    .await
}

#[actix_web::test]
async fn a_return_is_approved_refunded_and_restocked_keyed_by_its_return_id() {
    let app = spawn_app().await;
    let response = app.post_saga(&return_request("r-100", "SKU-1")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["business_key"], "r-100");
    let id = created["id"].as_str().unwrap().to_owned();

    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "completed", "{saga}");
    let shown = app.saga(&id).await;
    assert_eq!(shown["saga_type"], "return");
    assert_eq!(shown["business_key"], "r-100");
    assert_eq!(shown["input"]["return_id"], "r-100");
    assert_eq!(app.started_under(&id).await["version"], 1);
    assert_eq!(
        app.event_types(&id).await,
        [
            "SagaStarted",
            "ReturnApproved",
            "CustomerRefunded",
            "ItemsRestocked"
        ]
    );
    assert_eq!(
        app.commanded_steps(&id).await,
        ["approve-return", "refund-payment", "restock-items"]
    );
    // The refund's result is kept with its event and handed to the restock.
    let refund_id = format!("rf-{id}:refund-payment");
    assert_eq!(
        app.events(&id).await[2]["data"]["result"]["refund_id"],
        refund_id
    );
    let restock: Value = sqlx::query_scalar(
        "SELECT data FROM commands WHERE saga_id = $1::uuid AND step = 'restock-items'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(restock["refund_id"], refund_id);

    // The same return again is the same saga: the key was the return's id.
    let again = app.post_saga(&return_request("r-100", "SKU-1")).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
}

#[actix_web::test]
async fn a_refused_approval_rejects_the_return_without_a_refund() {
    let app = spawn_app().await;
    let id = app.start(&return_request("DENY-7", "SKU-1")).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated", "{saga}");
    assert!(
        saga["last_error"]
            .as_str()
            .unwrap()
            .contains("the return is not approved"),
        "{saga}"
    );
    assert_eq!(
        app.event_types(&id).await,
        ["SagaStarted", "StepFailed", "ReturnRejected"]
    );
    assert_eq!(
        app.commanded_steps(&id).await,
        ["approve-return", "reject-return"]
    );
    assert_eq!(app.participants.effects(&format!("{id}:refund-payment")), 0);
}

#[actix_web::test]
async fn a_restock_failing_after_the_refund_suspends_the_saga_instead_of_compensating() {
    let app = fast_retries_app().await;
    let id = app.start(&return_request("r-200", "DAMAGED-1")).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "suspended", "{saga}");
    assert_eq!(saga["current_step"], "restock-items");
    assert!(
        saga["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot restock DAMAGED-1"),
        "{saga}"
    );
    // Five attempts, as the step's retry says, then an operator is needed.
    let steps = app.commanded_steps(&id).await;
    assert_eq!(
        steps,
        [
            "approve-return",
            "refund-payment",
            "restock-items",
            "restock-items",
            "restock-items",
            "restock-items",
            "restock-items"
        ]
    );
    for undo in ["cancel-refund", "reject-return"] {
        assert!(!steps.iter().any(|s| s == undo), "{undo} was sent");
    }
    let events = app.events(&id).await;
    let last = &events.last().unwrap()["data"];
    assert_eq!(last["step"], "restock-items");
    assert_eq!(last["attempt"], 5);
    assert_eq!(last["then"]["action"], "suspend");
    assert_eq!(app.participants.effects(&format!("{id}:refund-payment")), 1);

    // Once the inventory is repaired, a retry finishes the return.
    app.participants.repair();
    let r = app
        .act(&id, "retry", json!({ "reason": "repaired" }), None, false)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(app.settled(&id).await["status"], "completed");
    assert_eq!(app.participants.effects(&format!("{id}:reject-return")), 0);
}

/// Payment answers a refund with a result its step's `result_schema` refuses.
fn refund_without_refund_id() -> SimulatorRule {
    SimulatorRule {
        participant: "payment".into(),
        command: Some("return.payment.refund.v1".into()),
        answer: "succeed".into(),
        result: Some(json!({ "other": 1 })),
        ..SimulatorRule::default()
    }
}

#[actix_web::test]
async fn a_reply_whose_result_breaks_its_schema_is_dead_lettered_and_the_saga_waits() {
    let app = spawn_app_with(|s| s.simulator.rules = vec![refund_without_refund_id()]).await;
    let id = app.start(&return_request("r-300", "SKU-1")).await;
    let arrived = app
        .eventually(Duration::from_secs(10), || async {
            app.count("SELECT count(*) FROM dead_letters").await > 0
        })
        .await;
    assert!(arrived, "the refund's reply was not dead-lettered");

    let page: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let letter = &items[0];
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("refund_id"), "{reason}");
    assert!(reason.contains("refund-payment"), "{reason}");
    // The reply is kept exactly as it came: a CloudEvent carrying the result.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(letter["raw_base64"].as_str().unwrap())
        .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT raw FROM dead_letters")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(raw, stored);
    let reply: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply["subject"], id.as_str());
    assert_eq!(reply["data"]["step"], "refund-payment");
    assert_eq!(reply["data"]["result"], json!({ "other": 1 }), "{reply}");

    // The saga did not move past the refund: it still waits for its answer.
    let saga = app.saga(&id).await;
    assert_eq!(saga["status"], "running", "{saga}");
    assert_eq!(saga["current_step"], "refund-payment");
    assert_eq!(saga["waiting_for"]["step"], "refund-payment");
    assert_eq!(
        app.event_types(&id).await,
        ["SagaStarted", "ReturnApproved"]
    );
    assert_eq!(
        app.commanded_steps(&id).await,
        ["approve-return", "refund-payment"]
    );
}
