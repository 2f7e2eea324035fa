//! W3C trace context: what a client sends with the start comes out on every
//! command the saga sends.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{order, order_request, spawn_app, TestApp};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn start_with(app: &TestApp, key: &str, traceparent: &str) -> String {
    let response = app
        .client
        .post(format!("{}/v1/sagas", app.address))
        .header("traceparent", traceparent)
        .json(&order_request(key, order(key, "c", "SKU-1", 100)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Every command's traceparent, in commit order.
async fn command_traces(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT traceparent FROM commands WHERE saga_id = $1::uuid ORDER BY message_id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_traceparent_sent_in_comes_out_on_every_command() {
    let app = spawn_app().await;
    let id = start_with(&app, "t-1", INCOMING).await;
    assert_eq!(app.settled(&id).await["status"], "completed");
    let traces = command_traces(&app, &id).await;
    assert_eq!(traces.len(), 3);
    let mut parents = std::collections::HashSet::new();
    for t in &traces {
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts[..2], ["00", TRACE_ID], "{t}");
        assert_eq!(parts[3], "01", "{t}");
        assert_ne!(
            parts[2], "00f067aa0ba902b7",
            "each command is a new span: {t}"
        );
        parents.insert(parts[2].to_owned());
    }
    assert_eq!(parents.len(), 3, "{traces:?}");
}

#[actix_web::test]
async fn an_invalid_traceparent_starts_a_new_trace() {
    let app = spawn_app().await;
    let id = start_with(&app, "t-2", "00-not-a-trace-01").await;
    app.settled(&id).await;
    let traces = command_traces(&app, &id).await;
    let trace_ids: std::collections::HashSet<&str> = traces
        .iter()
        .map(|t| t.split('-').nth(1).unwrap())
        .collect();
    assert_eq!(trace_ids.len(), 1, "one saga, one trace: {traces:?}");
    let trace_id = trace_ids.into_iter().next().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, TRACE_ID);
}
