//! `Prefer: wait=N` on `POST /v1/sagas` (RFC 7240): one request for a caller
//! who wants the outcome.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{order, order_request, spawn_app, spawn_app_with, TestApp};

async fn start_waiting(app: &TestApp, body: &Value, prefer: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/sagas", app.address))
        .header("Prefer", prefer)
        .json(body)
        .send()
        .await
        .expect("POST /v1/sagas answers")
}

fn applied(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("preference-applied")
        .map(|v| v.to_str().unwrap())
}

#[actix_web::test]
async fn a_start_that_prefers_to_wait_answers_with_the_outcome() {
    let app = spawn_app().await;
    let body = order_request("w-1", order("w-1", "c-1", "SKU-1", 1999));
    let response = start_waiting(&app, &body, "wait=10").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(applied(&response), Some("wait"));
    assert_eq!(response.headers()["etag"], "\"4\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let saga: Value = response.json().await.unwrap();
    assert_eq!(saga["status"], "completed");
    assert_eq!(saga["version"], 4);
    assert_eq!(saga["allowed_actions"], serde_json::json!([]));
    assert_eq!(
        location,
        format!("/v1/sagas/{}", saga["id"].as_str().unwrap())
    );
    // Woken by the last step, the answer is that step applied to the row it
    // read first: exactly the row as stored.
    let id = saga["id"].as_str().unwrap();
    assert_eq!(app.saga(id).await, saga);

    // A declined payment: the answer is the compensated saga.
    let body = order_request("w-2", order("w-2", "c-1", "SKU-1", 5_000_000));
    let response = start_waiting(&app, &body, "respond-async, wait=10").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let saga: Value = response.json().await.unwrap();
    assert_eq!(saga["status"], "compensated");
    assert_eq!(app.saga(saga["id"].as_str().unwrap()).await, saga);

    // The same start again is answered 200, also after waiting.
    let response = start_waiting(&app, &body, "wait=10").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(applied(&response), Some("wait"));
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["id"], saga["id"]);
    assert_eq!(again["status"], "compensated");
}

#[actix_web::test]
async fn a_saga_still_running_after_the_wait_is_answered_as_it_is_then() {
    let app = spawn_app().await;
    // `HANG-`: inventory never answers, so the saga stays at its first step.
    let body = order_request("w-hang", order("w-hang", "c-1", "HANG-1", 1999));
    let asked = Instant::now();
    let response = start_waiting(&app, &body, "wait=1").await;
    let took = asked.elapsed();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(applied(&response), Some("wait"));
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let saga: Value = response.json().await.unwrap();
    assert_eq!(saga["status"], "running");
    assert_eq!(saga["waiting_for"]["step"], "reserve-inventory");
    assert_eq!(saga["waiting_for"]["waiting_on"], "reply");
}

#[actix_web::test]
async fn a_wait_longer_than_the_longest_long_poll_is_cut_to_it() {
    let app = spawn_app_with(|s| s.http.max_wait_seconds = 1).await;
    let body = order_request("w-long", order("w-long", "c-1", "HANG-1", 1999));
    let asked = Instant::now();
    let response = start_waiting(&app, &body, "wait=3600").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(applied(&response), Some("wait"));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let saga: Value = response.json().await.unwrap();
    assert_eq!(saga["status"], "running");
}

#[actix_web::test]
async fn preferences_it_does_not_understand_change_nothing() {
    let app = spawn_app().await;
    for (i, prefer) in [
        "respond-async",
        "wait=soon",
        "wait=0",
        "handling=lenient; wait=5",
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("w-none-{i}");
        let body = order_request(&key, order(&key, "c-1", "HANG-1", 1999));
        let asked = Instant::now();
        let response = start_waiting(&app, &body, prefer).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{prefer}");
        assert_eq!(applied(&response), None, "{prefer}");
        // The one that would wait asks for 5 s.
        assert!(asked.elapsed() < Duration::from_secs(3), "{prefer}");
        let saga: Value = response.json().await.unwrap();
        assert_eq!(saga["status"], "running", "{prefer}");
        assert!(saga.get("waiting_for").is_none(), "{prefer}: {saga}");
    }
}
