//! Every path of the order saga, driven through the API.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{order, spawn_app};

#[actix_web::test]
async fn happy_path_completes_with_one_event_per_step() {
    let app = spawn_app().await;
    let response = app
        .post_saga(&crate::helpers::order_request(
            "o-1",
            order("o-1", "c-1", "SKU-1", 1999),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/sagas/{id}"));
    assert_eq!(created["saga_type"], "order");
    assert_eq!(created["business_key"], "o-1");
    assert_eq!(created["input"]["amount_cents"], 1999);

    let saga = app.settled(id).await;
    assert_eq!(saga["status"], "completed");
    assert_eq!(saga["version"], 4);
    assert_eq!(saga["current_step"], Value::Null);
    assert_eq!(
        app.event_types(id).await,
        [
            "SagaStarted",
            "InventoryReserved",
            "PaymentCharged",
            "OrderConfirmed"
        ]
    );
    let seqs: Vec<i64> = app
        .events(id)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    for step in ["reserve-inventory", "charge-payment", "confirm-order"] {
        assert_eq!(
            app.participants.effects(&format!("{id}:{step}")),
            1,
            "{step}"
        );
    }
    assert!(
        app.all_marked_sent().await,
        "every committed command was published"
    );
}

#[actix_web::test]
async fn out_of_stock_compensates_without_any_payment() {
    let app = spawn_app().await;
    let id = app
        .start_order("o-2", order("o-2", "c-1", "OOS-7", 1999))
        .await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated");
    assert!(saga["last_error"]
        .as_str()
        .unwrap()
        .contains("out of stock: OOS-7"));
    assert_eq!(
        app.event_types(&id).await,
        ["SagaStarted", "StepFailed", "OrderCancelled"]
    );
    assert_eq!(
        app.commanded_steps(&id).await,
        ["reserve-inventory", "cancel-order"]
    );
    assert_eq!(app.participants.effects(&format!("{id}:charge-payment")), 0);
}

#[actix_web::test]
async fn declined_payment_releases_inventory_then_cancels_the_order() {
    let app = spawn_app().await;
    let id = app
        .start_order("o-3", order("o-3", "c-1", "SKU-1", 1_000_001))
        .await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated");
    assert_eq!(
        app.event_types(&id).await,
        [
            "SagaStarted",
            "InventoryReserved",
            "StepFailed",
            "InventoryReleased",
            "OrderCancelled"
        ]
    );
    let failed = &app.events(&id).await[2]["data"];
    assert_eq!(failed["step"], "charge-payment");
    assert_eq!(failed["cause"], "refused");
    assert_eq!(
        failed["then"]["plan"],
        serde_json::json!(["release-inventory", "cancel-order"])
    );
    assert_eq!(app.participants.effects(&format!("{id}:charge-payment")), 0);
}

#[actix_web::test]
async fn failed_confirmation_refunds_releases_and_cancels_in_that_order() {
    let app = spawn_app().await;
    let id = app
        .start_order("o-4", order("NOCONFIRM-4", "c-1", "SKU-1", 500))
        .await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated");
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
    assert_eq!(
        app.commanded_steps(&id).await,
        [
            "reserve-inventory",
            "charge-payment",
            "confirm-order",
            "refund-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
}

#[actix_web::test]
async fn many_sagas_at_once_each_reach_their_own_end() {
    let app = spawn_app().await;
    let mut started = Vec::new();
    for i in 0..40 {
        let (sku, expected) = if i % 4 == 0 {
            ("OOS-1", "compensated")
        } else {
            ("SKU-1", "completed")
        };
        let key = format!("bulk-{i}");
        started.push((
            app.start_order(&key, order(&key, "c", sku, 100)).await,
            expected,
        ));
    }
    for (id, expected) in started {
        assert_eq!(app.settled(&id).await["status"], expected, "saga {id}");
    }
}

/// The start answers with the saga's row as committed, without reading it
/// back: it must be the row the store then serves, field by field.
#[actix_web::test]
async fn a_start_answers_with_the_row_as_stored() {
    let app = spawn_app().await;
    // `HANG-`: inventory never answers, so the saga stays at its first step.
    let request = crate::helpers::order_request("o-row", order("o-row", "c-1", "HANG-1", 1999));
    let response = app.post_saga(&request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let mut stored = app.saga(id).await;
    for detail in ["waiting_for", "allowed_actions", "progress"] {
        stored.as_object_mut().unwrap().remove(detail);
    }
    assert_eq!(created, stored);
    assert_eq!(etag, "\"1\"");
    // The same key and input again: the stored row, 200.
    let again = app.post_saga(&request).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), created);
}
