//! Dead letters: poison kept with its bytes, listed, redriven once usable,
//! discarded with a reason; every resolution recorded.

use base64::Engine;
use reqwest::StatusCode;
use sagaplane_orchestrator::Handled;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, order, reservation_reply_event, spawn_app, TestApp};

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The bytes of a reply saying `saga_id`'s first reservation succeeded.
fn reservation_reply(saga_id: &str, reply_id: &str) -> Vec<u8> {
    serde_json::to_vec(&reservation_reply_event(saga_id, reply_id)).unwrap()
}

#[actix_web::test]
async fn poison_is_kept_whole_and_can_be_discarded_with_a_reason() {
    let app = spawn_app().await;
    let poison = b"\x00not json at all\xff".to_vec();
    let handled = app
        .orchestrator
        .receive_raw("test-channel", poison.clone(), json!({ "x-test": "1" }))
        .await
        .unwrap();
    assert_eq!(handled, Handled::DeadLettered);
    let no_saga = reservation_reply(&uuid::Uuid::now_v7().to_string(), "r-unknown");
    app.orchestrator
        .receive_raw("test-channel", no_saga.clone(), json!({}))
        .await
        .unwrap();

    let page: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let first = &items[0];
    let raw = base64::engine::general_purpose::STANDARD
        .decode(first["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, poison, "the bytes are kept exactly");
    assert_eq!(first["raw_text"], Value::Null);
    assert_eq!(first["channel"], "test-channel");
    assert_eq!(first["headers"]["x-test"], "1");
    assert!(
        first["reason"].as_str().unwrap().contains("not JSON"),
        "{first}"
    );
    assert!(items[1]["reason"].as_str().unwrap().contains("no saga"));
    let id = first["id"].as_i64().unwrap();

    // Still poison: a redrive is refused and leaves it open.
    let body = assert_problem(
        post(
            &app,
            &format!("/v1/dead-letters/{id}/redrive"),
            json!({ "reason": "try" }),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("still unusable"));
    assert_problem(
        post(
            &app,
            &format!("/v1/dead-letters/{id}/discard"),
            json!({ "reason": "" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let r = post(
        &app,
        &format!("/v1/dead-letters/{id}/discard"),
        json!({ "reason": "garbage from a test" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let letter: Value = r.json().await.unwrap();
    assert_eq!(letter["resolution"], "discarded");
    assert_eq!(letter["resolved_by"], "anonymous");
    assert_eq!(letter["resolved_note"], "garbage from a test");
    assert_problem(
        post(
            &app,
            &format!("/v1/dead-letters/{id}/discard"),
            json!({ "reason": "again" }),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;

    // Open ones by default; all with open_only=false.
    let open: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
    assert_eq!(open["items"].as_array().unwrap().len(), 1);
    let all: Value = app
        .get("/v1/dead-letters?open_only=false")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_problem(
        app.get("/v1/dead-letters/999999").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(app.get("/v1/dead-letters/abc").await, StatusCode::NOT_FOUND).await;
    assert_eq!(
        app.metric("sagaplane_dead_letters_stored").await,
        1.0,
        "the gauge counts open dead letters"
    );
}

#[actix_web::test]
async fn a_dead_letter_that_became_usable_is_redriven_once() {
    let app = spawn_app().await;
    let saga = app
        .start_order("redrive-1", order("o-1", "c-1", "HANG-1", 500))
        .await;
    // A reply kept as a dead letter, e.g. one that arrived before its saga was
    // visible on this node; now the saga is there.
    let raw = reservation_reply(&saga, "r-redrive");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO dead_letters (channel, reason, raw) VALUES ('in-process', 'no saga', $1) RETURNING id",
    )
    .bind(&raw)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let r = post(
        &app,
        &format!("/v1/dead-letters/{id}/redrive"),
        json!({ "reason": "saga restored" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["outcome"], "applied");
    assert_eq!(result["dead_letter"]["resolution"], "redriven");
    assert_eq!(app.event_types(&saga).await[1], "InventoryReserved");
    // The same message again (say, redelivered by its broker) changes nothing.
    let handled = app
        .orchestrator
        .receive_raw("in-process", raw, json!({}))
        .await
        .unwrap();
    assert_eq!(handled, Handled::Duplicate);
    assert_problem(
        post(
            &app,
            &format!("/v1/dead-letters/{id}/redrive"),
            json!({ "reason": "again" }),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
}
