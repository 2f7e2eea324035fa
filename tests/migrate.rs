//! Migrating a running saga to another version of its definition, through
//! the binary: offered only with another version loaded, previewed by a dry
//! run, refused with 409 naming the steps the target lacks, and then run on
//! under the new version to its end.

use reqwest::StatusCode;
use sagaplane_orchestrator::Handled;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, order, order_request, reservation_reply_event, spawn_app_with, TempDir, TestApp,
};

fn order_v1() -> &'static str {
    sagaplane_sagas::definition::SHIPPED
        .iter()
        .find(|(file, _)| *file == "order.v1.toml")
        .unwrap()
        .1
}

/// Version 2 adds a notification after the confirmation; version 3 renames
/// the reservation, so a saga waiting on it cannot move there.
fn versions(folder: &TempDir) -> Vec<std::path::PathBuf> {
    let v2 = order_v1()
        .replace("\nversion = 1\n", "\nversion = 2\n")
        .replace(
            "\n[final_compensation]",
            r#"
[[steps]]
name = "notify-customer"
participant = "order"
command = "order.order.notify.v1"
event = "CustomerNotified"

[final_compensation]"#,
        );
    let v3 = order_v1()
        .replace("\nversion = 1\n", "\nversion = 3\n")
        .replace("name = \"reserve-inventory\"", "name = \"hold-stock\"");
    vec![
        folder.write("order.v2.toml", &v2),
        folder.write("order.v3.toml", &v3),
    ]
}

/// A saga on version 1 that waits at its reservation (inventory never
/// answers a HANG- SKU).
async fn waiting_on_v1(app: &TestApp) -> String {
    let mut request = order_request("m-1", order("m-1", "c-1", "HANG-1", 500));
    request["version"] = json!(1);
    let id = app.start(&request).await;
    assert_eq!(app.saga(&id).await["current_step"], "reserve-inventory");
    id
}

async fn migrate(app: &TestApp, id: &str, to: Value, dry_run: bool) -> reqwest::Response {
    let body = json!({"reason": "move to the notifying flow", "to_version": to});
    app.act(id, "migrate", body, None, dry_run).await
}

#[actix_web::test]
async fn a_waiting_saga_is_previewed_moved_and_finished_under_the_new_version() {
    let folder = TempDir::new();
    let paths = versions(&folder);
    let app = spawn_app_with(move |s| s.definitions.paths = paths).await;
    let id = waiting_on_v1(&app).await;
    let saga = app.saga(&id).await;
    let allowed = saga["allowed_actions"].as_array().unwrap();
    assert!(allowed.contains(&json!("migrate")), "{saga}");

    // The dry run shows the events and writes nothing.
    let events_before = app.events(&id).await.len();
    let response = migrate(&app, &id, json!(2), true).await;
    assert_eq!(response.status(), StatusCode::OK);
    let preview: Value = response.json().await.unwrap();
    assert_eq!(preview["dry_run"], true);
    let types: Vec<&str> = preview["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["OperatorIntervened", "SagaMigrated"]);
    assert_eq!(preview["events"][1]["data"]["to"]["version"], 2);
    assert_eq!(preview["commands"], json!([]));
    assert_eq!(app.events(&id).await.len(), events_before);

    let response = migrate(&app, &id, json!(2), false).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.event_types(&id).await.last().unwrap(),
        "SagaMigrated",
        "the migration is in the history"
    );

    // The reservation is answered at last: the saga runs on under version 2.
    let reply = serde_json::to_vec(&reservation_reply_event(&id, "m-late")).unwrap();
    let handled = app
        .orchestrator
        .receive_raw("in-process", reply, json!({}))
        .await
        .unwrap();
    assert!(matches!(handled, Handled::Applied { .. }), "{handled:?}");
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "completed", "{saga}");
    assert_eq!(
        app.commanded_steps(&id).await,
        [
            "reserve-inventory",
            "charge-payment",
            "confirm-order",
            "notify-customer"
        ]
    );
}

#[actix_web::test]
async fn a_version_lacking_the_step_in_hand_is_refused_with_409_naming_it() {
    let folder = TempDir::new();
    let paths = versions(&folder);
    let app = spawn_app_with(move |s| s.definitions.paths = paths).await;
    let id = waiting_on_v1(&app).await;
    for dry_run in [true, false] {
        let problem = assert_problem(
            migrate(&app, &id, json!(3), dry_run).await,
            StatusCode::CONFLICT,
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("reserve-inventory"), "{detail}");
    }
    for (to, field) in [(json!(1), "to_version"), (json!(9), "to_version")] {
        let problem = assert_problem(
            migrate(&app, &id, to, false).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let without = app
        .act(&id, "migrate", json!({"reason": "r"}), None, false)
        .await;
    let problem = assert_problem(without, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "to_version");
    assert_eq!(app.event_types(&id).await, ["SagaStarted"]);
}

#[actix_web::test]
async fn with_one_version_migrate_is_not_offered_and_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    let id = app
        .start_order("m-only", order("m-only", "c-1", "HANG-1", 500))
        .await;
    let saga = app.saga(&id).await;
    let allowed = saga["allowed_actions"].as_array().unwrap();
    assert!(!allowed.contains(&json!("migrate")), "{saga}");
    let problem = assert_problem(
        migrate(&app, &id, json!(2), false).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        problem["allowed_actions"]
            .as_array()
            .is_some_and(|a| !a.contains(&json!("migrate"))),
        "{problem}"
    );
}
