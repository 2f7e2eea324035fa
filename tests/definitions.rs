//! A team's own saga definition, given in `definitions.paths`, run end to end
//! by the simulated participants under a rule of the team's own.

use std::path::PathBuf;

use sagaplane_adapters::SimulatorRule;
use serde_json::{json, Value};

use crate::helpers::{order, spawn_app_with, TempDir, TestApp};

/// The order saga with a fraud check between the charge and the confirmation.
pub fn fraud_definition() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/order-fraud.v1.toml")
}

/// The fraud service refuses orders above 500.00.
pub fn fraud_refuses_above_50000() -> SimulatorRule {
    SimulatorRule {
        participant: "fraud".into(),
        command: Some("order.fraud.check.v1".into()),
        field: Some("amount_cents".into()),
        above: Some(json!(50_000)),
        answer: "refuse".into(),
        reason: Some("{value} cents looks like fraud".into()),
        ..SimulatorRule::default()
    }
}

async fn fraud_app() -> TestApp {
    spawn_app_with(|s| {
        s.definitions.paths = vec![fraud_definition()];
        s.simulator.rules = vec![fraud_refuses_above_50000()];
    })
    .await
}

fn fraud_request(key: &str, amount_cents: i64) -> Value {
    json!({
        "saga_type": "order-fraud",
        "business_key": key,
        "input": order(key, "c-1", "SKU-1", amount_cents),
    })
}

/// The `data` of the command sent for `step`.
async fn command_data(app: &TestApp, id: &str, step: &str) -> Value {
    sqlx::query_scalar("SELECT data FROM commands WHERE saga_id = $1::uuid AND step = $2")
        .bind(id)
        .bind(step)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_teams_own_definition_runs_to_completion_with_its_extra_step() {
    let app = fraud_app().await;
    let id = app.start(&fraud_request("f-ok", 1999)).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "completed", "{saga}");
    assert_eq!(saga["saga_type"], "order-fraud");
    assert_eq!(
        app.started_under(&id).await["saga_type"],
        "order-fraud",
        "the saga records the definition it runs under"
    );
    assert_eq!(app.started_under(&id).await["version"], 1);
    assert_eq!(
        app.event_types(&id).await,
        [
            "SagaStarted",
            "InventoryReserved",
            "PaymentCharged",
            "FraudCleared",
            "OrderConfirmed"
        ]
    );
    assert_eq!(
        app.commanded_steps(&id).await,
        [
            "reserve-inventory",
            "charge-payment",
            "fraud-check",
            "confirm-order"
        ]
    );
    // The check is sent to the fraud service with the charge's result in it.
    let check: (String, String) = sqlx::query_as(
        "SELECT participant, command_type FROM commands WHERE saga_id = $1::uuid AND step = 'fraud-check'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(check, ("fraud".into(), "order.fraud.check.v1".into()));
    let data = command_data(&app, &id, "fraud-check").await;
    assert_eq!(data["amount_cents"], 1999);
    assert_eq!(data["charge_id"], format!("ch-{id}:charge-payment"));
    assert_eq!(app.participants.effects(&format!("{id}:fraud-check")), 1);
}

#[actix_web::test]
async fn a_refused_fraud_check_refunds_releases_and_cancels_in_reverse_order() {
    let app = fraud_app().await;
    let id = app.start(&fraud_request("f-bad", 75_000)).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated", "{saga}");
    let error = saga["last_error"].as_str().unwrap();
    assert!(error.contains("75000 cents looks like fraud"), "{error}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "SagaStarted",
            "InventoryReserved",
            "PaymentCharged",
            "StepFailed",
            "PaymentRefunded",
            "InventoryReleased",
            "OrderCancelled"
        ]
    );
    let failed = &app.events(&id).await[3]["data"];
    assert_eq!(failed["step"], "fraud-check");
    assert_eq!(failed["cause"], "refused");
    assert_eq!(
        failed["then"]["plan"],
        json!(["refund-payment", "release-inventory", "cancel-order"])
    );
    assert_eq!(
        app.commanded_steps(&id).await,
        [
            "reserve-inventory",
            "charge-payment",
            "fraud-check",
            "refund-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
    // The refund names the charge it undoes.
    let refund = command_data(&app, &id, "refund-payment").await;
    assert_eq!(refund["charge_id"], format!("ch-{id}:charge-payment"));
    assert_eq!(app.participants.effects(&format!("{id}:confirm-order")), 0);

    // The shipped sagas still run beside it, under the same rules.
    let order_id = app
        .start_order("o-1", order("o-1", "c-1", "SKU-1", 75_000))
        .await;
    assert_eq!(app.settled(&order_id).await["status"], "completed");
}

#[actix_web::test]
async fn a_folder_in_the_paths_loads_every_toml_file_in_it() {
    let folder = TempDir::new();
    let fraud = std::fs::read_to_string(fraud_definition()).unwrap();
    folder.write("order-fraud.v1.toml", &fraud);
    folder.write(
        "order-fraud.v2.toml",
        &fraud.replace("version = 1", "version = 2"),
    );
    folder.write(
        "gift.v1.toml",
        r#"
saga_type = "gift"
version = 1

[[steps]]
name = "wrap"
participant = "warehouse"
command = "gift.warehouse.wrap.v1"
event = "GiftWrapped"
data = { order_id = "${input.order_id}" }
"#,
    );
    // Not a definition: left alone.
    folder.write("README.md", "saga_type = \"not-loaded\"\nversion = 1\n");
    let app = spawn_app_with(|s| s.definitions.paths = vec![folder.0.clone()]).await;

    let types: Value = app.get("/v1/saga-types").await.json().await.unwrap();
    let mut loaded: Vec<(String, Vec<u64>)> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let versions = t["versions"].as_array().unwrap();
            (
                t["saga_type"].as_str().unwrap().to_owned(),
                versions
                    .iter()
                    .map(|v| v["version"].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            ("gift".to_owned(), vec![1]),
            ("order".to_owned(), vec![1]),
            ("order-fraud".to_owned(), vec![1, 2]),
            ("return".to_owned(), vec![1]),
        ]
    );
    let stored = app
        .count("SELECT count(*) FROM saga_definitions WHERE source LIKE '%README%'")
        .await;
    assert_eq!(stored, 0);

    // A definition from the folder runs: a start naming no version gets the newest.
    let id = app
        .start(
            &json!({ "saga_type": "gift", "business_key": "g-1", "input": { "order_id": "o-9" } }),
        )
        .await;
    assert_eq!(app.settled(&id).await["status"], "completed");
    assert_eq!(app.event_types(&id).await, ["SagaStarted", "GiftWrapped"]);
    let id = app.start(&fraud_request("f-2", 100)).await;
    assert_eq!(app.started_under(&id).await["version"], 2);
}
