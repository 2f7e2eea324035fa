//! `POST /v1/ingress/eventbridge`: replies as an EventBridge API destination
//! delivers them — authenticated by an API key, applied once, poison kept.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, order, reservation_reply_event, spawn_app_with, TestApp};

const KEY: &str = "eventbridge-connection-key";

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.ingress.eventbridge.api_key = KEY.into();
        // Inventory's commands go nowhere, as if to AWS: its reply comes in here.
        s.simulator
            .rules
            .push(crate::helpers::inventory_answers_through_eventbridge());
    })
    .await
}

async fn post(app: &TestApp, key: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/v1/ingress/eventbridge", app.address))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

/// The EventBridge event an API destination sends for a participant's reply.
fn envelope(saga: &str, event_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "0", "id": "eb-envelope-id", "detail-type": "sagaplane.reply.v1",
        "source": "inventory-service", "account": "123456789012",
        "time": "2026-11-23T12:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": reservation_reply_event(saga, event_id)
    }))
    .unwrap()
}

#[actix_web::test]
async fn a_reply_is_applied_once_and_only_with_the_key() {
    let app = app().await;
    let id = app
        .start_order("in-1", order("o-1", "c-1", "AWS-1", 500))
        .await;
    let body = envelope(&id, "reply-1");

    for key in [None, Some("wrong")] {
        let r = post(&app, key, body.clone()).await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.saga(&id).await["current_step"], "reserve-inventory");

    let r = post(&app, Some(KEY), body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    // Answered after commit: the saga has moved on already.
    assert_ne!(app.saga(&id).await["current_step"], "reserve-inventory");
    // EventBridge delivers at least once: the same event again changes nothing,
    // and so does the same reply arriving on another channel.
    let r = post(&app, Some(KEY), body.clone()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    let detail =
        serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()["detail"]).unwrap();
    let again = app
        .orchestrator
        .receive_raw("in-process", detail, json!({}))
        .await
        .unwrap();
    assert_eq!(again, sagaplane_orchestrator::Handled::Duplicate);
    assert_eq!(app.settled(&id).await["status"], "completed");
    assert_eq!(
        app.event_types(&id)
            .await
            .iter()
            .filter(|t| *t == "InventoryReserved")
            .count(),
        1
    );
}

#[actix_web::test]
async fn poison_is_kept_as_a_dead_letter_and_redriven_through_the_same_decoder() {
    let app = app().await;
    let r = post(&app, Some(KEY), b"{not json".to_vec()).await;
    let problem = assert_problem(r, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"].as_str().unwrap().contains("dead letter"));
    let not_a_reply = serde_json::to_vec(&json!({"detail": {"specversion": "1.0", "id": "x",
        "source": "s", "type": "something.else.v1"}}))
    .unwrap();
    assert_problem(
        post(&app, Some(KEY), not_a_reply).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let stored: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT channel, raw FROM dead_letters ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], ("eventbridge".to_owned(), b"{not json".to_vec()));

    // A reply for a saga not known (yet) is kept too, and redriven once it is.
    let id = app
        .start_order("in-2", order("o-2", "c-1", "AWS-1", 500))
        .await;
    let body = envelope(&id, "reply-2");
    sqlx::query(
        "INSERT INTO dead_letters (channel, reason, raw) VALUES ('eventbridge', 'test', $1)",
    )
    .bind(&body)
    .execute(&app.pool)
    .await
    .unwrap();
    let letter: i64 = sqlx::query_scalar("SELECT max(id) FROM dead_letters")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let r = app
        .client
        .post(format!("{}/v1/dead-letters/{letter}/redrive", app.address))
        .json(&json!({ "reason": "saga is there now" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    assert_eq!(app.settled(&id).await["status"], "completed");
}

#[actix_web::test]
async fn without_a_key_configured_the_ingress_is_off() {
    let app = crate::helpers::spawn_app().await;
    let r = post(&app, Some("anything"), b"{}".to_vec()).await;
    assert_problem(r, StatusCode::NOT_FOUND).await;
}

#[actix_web::test]
async fn a_nul_in_any_field_is_kept_as_a_dead_letter_with_its_bytes() {
    let app = app().await;
    let id = app
        .start_order("in-nul", order("o-n", "c-1", "AWS-1", 500))
        .await;
    let cases = [
        json!({"specversion": "1.0", "id": "nul-1", "source": "s", "type": "x\u{0}", "subject": id, "data": {}}),
        json!({"specversion": "1.0\u{0}", "id": "nul-2", "source": "s", "type": "sagaplane.reply.v1", "subject": id, "data": {}}),
        json!({"specversion": "1.0", "id": "nul-3", "source": "s", "type": "sagaplane.reply.v1", "subject": "x\u{0}y", "data": {}}),
        json!({"specversion": "1.0", "id": "nul-4", "source": "s", "type": "sagaplane.reply.v1", "subject": id,
               "data": {"step": "reserve-inventory", "attempt": 1, "outcome": {"status": "\u{0}"}}}),
        json!({"specversion": "1.0", "id": "nul-5", "source": "s", "type": "sagaplane.reply.v1", "subject": id,
               "data": {"\u{0}": 1}}),
    ];
    for (i, case) in cases.iter().enumerate() {
        let raw = serde_json::to_vec(case).unwrap();
        let r = post(&app, Some(KEY), raw.clone()).await;
        let problem = assert_problem(r, StatusCode::BAD_REQUEST).await;
        assert!(
            !problem.to_string().contains("\\u0000"),
            "case {i}: {problem}"
        );
        let (reason, stored): (String, Vec<u8>) =
            sqlx::query_as("SELECT reason, raw FROM dead_letters ORDER BY id DESC LIMIT 1")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(stored, raw, "case {i}: the bytes are kept whole");
        assert!(!reason.contains('\u{0}'), "case {i}: {reason:?}");
    }
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 5);
}

#[actix_web::test]
async fn replies_up_to_the_ingress_limit_are_taken_and_larger_ones_kept_cut() {
    let app = app().await;
    let id = app
        .start_order("in-big", order("o-b", "c-1", "AWS-1", 500))
        .await;
    // 100 KiB: over `http.max_body_bytes`, within EventBridge's 256 KiB.
    let mut event: Value = serde_json::from_slice(&envelope(&id, "big-1")).unwrap();
    event["resources"] = json!(["r".repeat(100 * 1024)]);
    let r = post(&app, Some(KEY), serde_json::to_vec(&event).unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    // 300 KiB: refused, and kept as a dead letter cut to the limit.
    event["resources"] = json!(["r".repeat(300 * 1024)]);
    let raw = serde_json::to_vec(&event).unwrap();
    let r = post(&app, Some(KEY), raw.clone()).await;
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let (reason, kept, headers): (String, Vec<u8>, Value) =
        sqlx::query_as("SELECT reason, raw, headers FROM dead_letters ORDER BY id DESC LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(kept, raw[..256 * 1024]);
    assert!(reason.contains(&format!("{} bytes", raw.len())), "{reason}");
    assert_eq!(headers["length"], raw.len());
}
