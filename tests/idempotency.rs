//! `(saga_type, business_key)` is the idempotency key of a start.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, order, order_request, spawn_app};

#[actix_web::test]
async fn the_same_start_twice_returns_the_same_saga() {
    let app = spawn_app().await;
    let body = order_request("k-1", order("o-1", "c-1", "SKU-1", 100));
    let first = app.post_saga(&body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    // Same input with its keys in another order is the same input.
    let reordered: Value = serde_json::from_str(
        r#"{"input":{"currency":"EUR","amount_cents":100,"items":[{"qty":2,"sku":"SKU-1"}],
            "customer_id":"c-1","order_id":"o-1"},"business_key":"k-1","saga_type":"order"}"#,
    )
    .unwrap();
    let second = app.post_saga(&reordered).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        second.headers()["location"].to_str().unwrap(),
        format!("/v1/sagas/{}", first["id"].as_str().unwrap())
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 1);
}

#[actix_web::test]
async fn the_same_key_with_another_input_is_a_conflict() {
    let app = spawn_app().await;
    let id = app
        .start_order("k-2", order("o-2", "c-1", "SKU-1", 100))
        .await;
    let response = app
        .post_saga(&order_request("k-2", order("o-2", "c-1", "SKU-1", 101)))
        .await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert!(
        problem["detail"].as_str().unwrap().contains(&id),
        "{problem}"
    );
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM saga_events WHERE seq = 1")
            .await,
        1
    );
}

#[actix_web::test]
async fn fifty_concurrent_starts_of_one_key_create_exactly_one_saga() {
    let app = spawn_app().await;
    let body = order_request("k-3", order("o-3", "c-1", "SKU-1", 100));
    let responses = join_all((0..50).map(|_| app.post_saga(&body))).await;
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected status {other}"),
        }
        let body: Value = response.json().await.unwrap();
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1, "every caller got the same saga");
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 1);
    assert_eq!(
        app.count("SELECT count(DISTINCT saga_id) FROM saga_events")
            .await,
        1
    );
    let id = ids.into_iter().next().unwrap();
    assert_eq!(app.settled(&id).await["status"], "completed");
}
