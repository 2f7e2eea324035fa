//! A team's definition using a parallel group and a condition, through the
//! binary: inventory and payment are asked at once, the fraud check runs only
//! for large amounts, and a failure undoes exactly what was applied.

use serde_json::{json, Value};

use crate::definitions::{fraud_definition, fraud_refuses_above_50000};
use crate::helpers::{order, spawn_app_with, TempDir, TestApp};

/// The fraud fixture as `order-parallel`: reservation and charge in one
/// group; the fraud check only above 1,000.00.
fn parallel_definition(folder: &TempDir) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fraud_definition())
        .unwrap()
        .replace(
            "saga_type = \"order-fraud\"",
            "saga_type = \"order-parallel\"",
        )
        .replacen(
            "name = \"reserve-inventory\"",
            "name = \"reserve-inventory\"\ngroup = \"prepare\"",
            1,
        )
        .replacen(
            "name = \"charge-payment\"",
            "name = \"charge-payment\"\ngroup = \"prepare\"",
            1,
        )
        .replacen(
            "name = \"fraud-check\"",
            "name = \"fraud-check\"\nwhen = { value = \"${input.amount_cents}\", above = 100000 }",
            1,
        );
    assert_eq!(text.matches("group = \"prepare\"").count(), 2);
    folder.write("order-parallel.v1.toml", &text)
}

async fn app() -> (TestApp, TempDir) {
    let folder = TempDir::new();
    let path = parallel_definition(&folder);
    let app = spawn_app_with(move |s| {
        s.definitions.paths = vec![path];
        s.simulator.rules = vec![fraud_refuses_above_50000()];
    })
    .await;
    (app, folder)
}

fn request(key: &str, sku: &str, amount_cents: i64) -> Value {
    json!({
        "saga_type": "order-parallel",
        "business_key": key,
        "input": order(key, "c-1", sku, amount_cents),
    })
}

/// The time each step's command was committed, by step.
async fn committed_at(app: &TestApp, id: &str) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as(
        "SELECT step, created_at FROM commands WHERE saga_id = $1::uuid ORDER BY created_at, step",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_small_order_sends_the_group_at_once_and_skips_the_fraud_check() {
    let (app, _folder) = app().await;
    let id = app.start(&request("p-small", "SKU-1", 1999)).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "completed", "{saga}");
    let sent = committed_at(&app, &id).await;
    let steps: Vec<&str> = sent.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        steps,
        ["charge-payment", "reserve-inventory", "confirm-order"]
    );
    // Both members of the group were committed by the start, together.
    assert_eq!(sent[0].1, sent[1].1);
    let progress = &app.saga(&id).await;
    assert!(
        !app.commanded_steps(&id)
            .await
            .contains(&"fraud-check".to_owned()),
        "{progress}"
    );
}

#[actix_web::test]
async fn a_large_order_runs_the_fraud_check_and_its_refusal_undoes_the_group() {
    let (app, _folder) = app().await;
    let id = app.start(&request("p-large", "SKU-1", 200_000)).await;
    let saga = app.settled(&id).await;
    // The fraud service refuses above 500.00: refund and release (the whole
    // group, in reverse order), then cancel.
    assert_eq!(saga["status"], "compensated", "{saga}");
    let steps = app.commanded_steps(&id).await;
    assert_eq!(
        steps[2..],
        [
            "fraud-check",
            "refund-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
}

#[actix_web::test]
async fn a_declined_charge_releases_the_reservation_and_refunds_nothing() {
    let (app, _folder) = app().await;
    // Payment declines above 10,000.00 (a shipped rule).
    let id = app.start(&request("p-declined", "SKU-1", 2_000_000)).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated", "{saga}");
    let steps = app.commanded_steps(&id).await;
    assert!(steps.contains(&"release-inventory".to_owned()), "{steps:?}");
    assert!(!steps.contains(&"refund-payment".to_owned()), "{steps:?}");
    assert!(!steps.contains(&"fraud-check".to_owned()), "{steps:?}");
    assert_eq!(steps.last().unwrap(), "cancel-order");
}
