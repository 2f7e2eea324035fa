//! What the API says about the loaded definitions: `GET /v1/saga-types`,
//! one version's document, the start request's versions, and the OpenAPI
//! document's start request, one entry per loaded type.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::definitions::fraud_definition;
use crate::helpers::{assert_problem, order, order_request, spawn_app, spawn_app_with};

/// `(name, participant, command_type, event)` of a step or an undo.
fn command(step: &Value) -> (String, String, String, String) {
    let text = |k: &str| step[k].as_str().unwrap_or_default().to_owned();
    (
        text("name"),
        text("participant"),
        text("command_type"),
        text("event"),
    )
}

fn c(
    name: &str,
    participant: &str,
    command_type: &str,
    event: &str,
) -> (String, String, String, String) {
    (
        name.into(),
        participant.into(),
        command_type.into(),
        event.into(),
    )
}

#[actix_web::test]
async fn saga_types_lists_each_type_with_its_versions_steps_and_input_schema() {
    let app = spawn_app().await;
    let response = app.get("/v1/saga-types").await;
    assert_eq!(response.status(), StatusCode::OK);
    let types: Value = response.json().await.unwrap();
    let names: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["saga_type"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order", "return"]);

    let order_type = &types[0];
    assert_eq!(order_type["newest_version"], 1);
    assert_eq!(order_type["versions"].as_array().unwrap().len(), 1);
    let v1 = &order_type["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["hash"].as_str().unwrap().len(), 64, "{v1}");
    assert_eq!(v1["business_key"], Value::Null);
    let required = v1["input_schema"]["required"].as_array().unwrap();
    assert!(required.contains(&json!("order_id")), "{v1}");
    let steps = v1["steps"].as_array().unwrap();
    let forward: Vec<_> = steps.iter().map(command).collect();
    assert_eq!(
        forward,
        [
            c(
                "reserve-inventory",
                "inventory",
                "order.inventory.reserve.v1",
                "InventoryReserved"
            ),
            c(
                "charge-payment",
                "payment",
                "order.payment.charge.v1",
                "PaymentCharged"
            ),
            c(
                "confirm-order",
                "order",
                "order.order.confirm.v1",
                "OrderConfirmed"
            ),
        ]
    );
    let undos: Vec<_> = steps.iter().map(|s| command(&s["undo"])).collect();
    assert_eq!(
        undos,
        [
            c(
                "release-inventory",
                "inventory",
                "order.inventory.release.v1",
                "InventoryReleased"
            ),
            c(
                "refund-payment",
                "payment",
                "order.payment.refund.v1",
                "PaymentRefunded"
            ),
            c("", "", "", ""),
        ]
    );
    assert_eq!(steps[2]["undo"], Value::Null);
    assert_eq!(
        command(&v1["final_compensation"]),
        c(
            "cancel-order",
            "order",
            "order.order.cancel.v1",
            "OrderCancelled"
        )
    );

    let return_v1 = &types[1]["versions"][0];
    assert_eq!(return_v1["business_key"], "return_id");
    assert!(return_v1["input_schema"]["properties"]["return_id"].is_object());
    let pivots: Vec<&Value> = return_v1["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["pivot"])
        .collect();
    assert_eq!(pivots, [&json!(false), &json!(true), &json!(false)]);
    assert_eq!(
        command(&return_v1["steps"][1]["undo"]),
        c(
            "cancel-refund",
            "payment",
            "return.payment.cancel-refund.v1",
            "RefundCancelled"
        )
    );

    // One version with its whole document.
    let response = app.get("/v1/saga-types/order/versions/1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let definition: Value = response.json().await.unwrap();
    assert_eq!(definition["saga_type"], "order");
    assert_eq!(definition["version"], 1);
    assert_eq!(definition["hash"], v1["hash"]);
    assert_eq!(definition["steps"], v1["steps"]);
    let document = &definition["document"];
    assert_eq!(document["saga_type"], "order");
    assert_eq!(document["version"], 1);
    assert_eq!(document["input_schema"], v1["input_schema"]);
    assert_eq!(
        document["steps"][1]["undo"]["data"]["charge_id"],
        "${charge-payment.result.charge_id}"
    );
    assert_eq!(document["final_compensation"]["name"], "cancel-order");
}

#[actix_web::test]
async fn an_unknown_type_or_version_is_404_and_a_start_naming_one_is_422() {
    let app = spawn_app().await;
    for path in [
        "/v1/saga-types/nope/versions/1",
        "/v1/saga-types/order/versions/2",
        "/v1/saga-types/order/versions/0",
        "/v1/saga-types/order/versions/latest",
    ] {
        assert_problem(app.get(path).await, StatusCode::NOT_FOUND).await;
    }
    let body = assert_problem(
        app.get("/v1/saga-types/order/versions/2").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("`order` has no version 2"), "{detail}");

    let mut request = order_request("k-9", order("o-9", "c-1", "SKU-1", 100));
    request["version"] = json!(9);
    let body = assert_problem(
        app.post_saga(&request).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["field"], "version", "{body}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains("no version 9") && message.contains("1"),
        "{message}"
    );
    let started = app.count("SELECT count(*) FROM sagas").await;
    assert_eq!(started, 0, "nothing was started");

    // A return with no business key and no return_id in its input: 422.
    let body = assert_problem(
        app.post_saga(&json!({ "saga_type": "return", "input": { "order_id": "o-1" } }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "business_key", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("return_id"),
        "{body}"
    );
}

#[actix_web::test]
async fn the_openapi_start_request_has_one_entry_per_loaded_type_with_its_input_schema() {
    let app = spawn_app_with(|s| s.definitions.paths = vec![fraud_definition()]).await;
    let types: Value = app.get("/v1/saga-types").await.json().await.unwrap();
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        doc["paths"]["/v1/sagas"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/StartRequest"
    );
    let start = &doc["components"]["schemas"]["StartRequest"];
    let variants = start["oneOf"].as_array().expect("a oneOf");
    assert_eq!(variants.len(), 3, "{start}");
    for t in types.as_array().unwrap() {
        let name = t["saga_type"].as_str().unwrap();
        let mine: Vec<&Value> = variants
            .iter()
            .filter(|v| v["properties"]["saga_type"]["enum"] == json!([name]))
            .collect();
        assert_eq!(mine.len(), 1, "{name}: {start}");
        let variant = mine[0];
        let newest = t["versions"].as_array().unwrap().last().unwrap();
        assert_eq!(
            variant["properties"]["input"], newest["input_schema"],
            "{name}"
        );
        assert!(variant["properties"]["input"].is_object(), "{name}");
        assert_eq!(variant["properties"]["version"]["enum"], json!([1, null]));
        let required = variant["required"].as_array().unwrap();
        assert_eq!(
            required.contains(&json!("business_key")),
            name != "return",
            "{name}: a return is keyed by its return_id"
        );
    }
}
