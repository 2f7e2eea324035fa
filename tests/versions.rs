//! Definition versions: a saga runs to its end under the version it started
//! with, across a restart that brings a new version; new starts get the
//! newest unless they name one; a stored version outlives its file.

use std::path::PathBuf;

use reqwest::StatusCode;
use sagaplane_orchestrator::Handled;
use serde_json::{json, Value};

use crate::helpers::{
    fresh_database_url, order, order_request, reservation_reply_event, spawn_app_on, start_node,
    TempDir, TestApp,
};

/// The shipped order saga as version 2, with a customer notification after
/// the confirmation; written to `folder`.
pub(crate) fn order_v2(folder: &TempDir) -> PathBuf {
    let v1 = sagaplane_sagas::definition::SHIPPED
        .iter()
        .find(|(file, _)| *file == "order.v1.toml")
        .unwrap()
        .1;
    assert_eq!(v1.matches("\nversion = 1\n").count(), 1);
    let v2 = v1.replace("\nversion = 1\n", "\nversion = 2\n").replace(
        "\n[final_compensation]",
        r#"
[[steps]]
name = "notify-customer"
participant = "notifications"
command = "order.notifications.notify.v1"
event = "CustomerNotified"
data = { order_id = "${input.order_id}", customer_id = "${input.customer_id}" }

[final_compensation]"#,
    );
    folder.write("order.v2.toml", &v2)
}

const V1_STEPS: [&str; 3] = ["reserve-inventory", "charge-payment", "confirm-order"];
const V2_STEPS: [&str; 4] = [
    "reserve-inventory",
    "charge-payment",
    "confirm-order",
    "notify-customer",
];

/// `(saga_type, [versions])` as `GET /v1/saga-types` lists them.
async fn loaded(app: &TestApp) -> Vec<(String, Vec<u64>)> {
    let response = app.get("/v1/saga-types").await;
    assert_eq!(response.status(), StatusCode::OK);
    let types: Value = response.json().await.unwrap();
    types
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
        .collect()
}

#[actix_web::test]
async fn a_saga_runs_to_its_end_under_the_version_it_started_with() {
    let db = fresh_database_url();
    let first = start_node(&db, |_| {}).await;
    // Inventory never answers a HANG- SKU: the saga waits at its first step.
    let old = first
        .app
        .start_order("v-old", order("v-old", "c-1", "HANG-1", 500))
        .await;
    assert_eq!(first.app.started_under(&old).await["version"], 1);
    assert_eq!(
        first.app.saga(&old).await["current_step"],
        "reserve-inventory"
    );
    let (client, address) = (first.app.client.clone(), first.app.address.clone());
    first.stop().await;
    let gone = client.get(format!("{address}/healthz")).send().await;
    assert!(gone.is_err(), "the first application still answers");

    let folder = TempDir::new();
    let v2 = order_v2(&folder);
    let app = spawn_app_on(&db, |s| s.definitions.paths = vec![v2]).await;
    assert_eq!(
        loaded(&app).await,
        [
            ("order".to_owned(), vec![1, 2]),
            ("return".to_owned(), vec![1])
        ]
    );

    // A start naming no version runs the newest.
    let new = app
        .start_order("v-new", order("v-new", "c-1", "SKU-1", 500))
        .await;
    assert_eq!(app.settled(&new).await["status"], "completed");
    assert_eq!(app.started_under(&new).await["version"], 2);
    assert_eq!(app.commanded_steps(&new).await, V2_STEPS);
    assert_eq!(
        app.event_types(&new).await.last().unwrap(),
        "CustomerNotified"
    );

    // A start naming version 1 runs version 1.
    let mut request = order_request("v-pinned", order("v-pinned", "c-1", "SKU-1", 500));
    request["version"] = json!(1);
    let pinned = app.start(&request).await;
    assert_eq!(app.settled(&pinned).await["status"], "completed");
    assert_eq!(app.started_under(&pinned).await["version"], 1);
    assert_eq!(app.commanded_steps(&pinned).await, V1_STEPS);

    // Inventory finally answers the saga started before the restart: it goes
    // on under version 1, to its end, without the step version 2 added.
    let reply = serde_json::to_vec(&reservation_reply_event(&old, "late-reply")).unwrap();
    let handled = app
        .orchestrator
        .receive_raw("in-process", reply, json!({}))
        .await
        .unwrap();
    assert!(matches!(handled, Handled::Applied { .. }), "{handled:?}");
    let saga = app.settled(&old).await;
    assert_eq!(saga["status"], "completed", "{saga}");
    assert_eq!(app.commanded_steps(&old).await, V1_STEPS);
    assert_eq!(
        app.event_types(&old).await,
        [
            "SagaStarted",
            "InventoryReserved",
            "PaymentCharged",
            "OrderConfirmed"
        ]
    );
    assert_eq!(
        app.participants.effects(&format!("{old}:notify-customer")),
        0
    );
}

#[actix_web::test]
async fn a_stored_version_is_still_loaded_once_its_file_is_gone() {
    let db = fresh_database_url();
    let folder = TempDir::new();
    let v2 = order_v2(&folder);
    let first = start_node(&db, |s| s.definitions.paths = vec![v2.clone()]).await;
    // Left waiting under version 2, the newest.
    let waiting = first
        .app
        .start_order("w-1", order("w-1", "c-1", "HANG-1", 500))
        .await;
    assert_eq!(first.app.started_under(&waiting).await["version"], 2);
    first.stop().await;
    std::fs::remove_file(&v2).unwrap();

    let app = spawn_app_on(&db, |_| {}).await;
    assert_eq!(
        loaded(&app).await,
        [
            ("order".to_owned(), vec![1, 2]),
            ("return".to_owned(), vec![1])
        ]
    );
    let types: Value = app.get("/v1/saga-types").await.json().await.unwrap();
    assert_eq!(types[0]["newest_version"], 2);
    let definition: Value = app
        .get("/v1/saga-types/order/versions/2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        definition["document"]["steps"][3]["name"],
        "notify-customer"
    );

    // New starts still get version 2, and the waiting saga finishes under it.
    let new = app
        .start_order("w-2", order("w-2", "c-1", "SKU-1", 500))
        .await;
    assert_eq!(app.settled(&new).await["status"], "completed");
    assert_eq!(app.commanded_steps(&new).await, V2_STEPS);
    let reply = serde_json::to_vec(&reservation_reply_event(&waiting, "late-reply")).unwrap();
    app.orchestrator
        .receive_raw("in-process", reply, json!({}))
        .await
        .unwrap();
    assert_eq!(app.settled(&waiting).await["status"], "completed");
    assert_eq!(app.commanded_steps(&waiting).await, V2_STEPS);
}
