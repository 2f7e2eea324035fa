//! Every bad request gets a problem+json answer, and nothing is stored.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, order, order_request, spawn_app, TestApp};

async fn post_raw(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/sagas", app.address))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM saga_events").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM commands").await, 0);
}

#[actix_web::test]
async fn malformed_json_is_a_bad_request() {
    let app = spawn_app().await;
    let response = post_raw(&app, "application/json", r#"{"saga_type": "order", "#).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_unsupported() {
    let app = spawn_app().await;
    let body = order_request("k", order("o", "c", "S", 1)).to_string();
    let response = post_raw(&app, "text/plain", body).await;
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn an_oversized_body_is_refused() {
    let app = spawn_app_small_body().await;
    let mut input = order("o", "c", "S", 1);
    input["items"] = json!((0..100)
        .map(|i| json!({"sku": format!("SKU-{i:04}"), "qty": 1}))
        .collect::<Vec<_>>());
    let response = app.post_saga(&order_request("k", input)).await;
    let problem = assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1024 bytes"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;
}

async fn spawn_app_small_body() -> TestApp {
    crate::helpers::spawn_app_with(|s| s.http.max_body_bytes = 1024).await
}

/// A named change to a valid request, the field the answer must name, and a
/// phrase its message must hold.
type Case = (
    &'static str,
    Box<dyn Fn(&mut Value)>,
    &'static str,
    &'static str,
);

#[actix_web::test]
async fn each_invalid_field_is_named_in_a_422() {
    let app = spawn_app().await;
    let cases: Vec<Case> = vec![
        (
            "unknown saga type",
            Box::new(|b| b["saga_type"] = json!("shipment")),
            "saga_type",
            "unknown saga type `shipment`",
        ),
        (
            "saga type not a string",
            Box::new(|b| b["saga_type"] = json!(5)),
            "saga_type",
            "invalid type",
        ),
        (
            "missing business key",
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("business_key");
            }),
            "business_key",
            "names no input field",
        ),
        (
            "blank business key",
            Box::new(|b| b["business_key"] = json!("  ")),
            "business_key",
            "not blank",
        ),
        (
            "unknown top-level field",
            Box::new(|b| b["priority"] = json!(1)),
            "priority",
            "unknown field",
        ),
        (
            "missing currency",
            Box::new(|b| {
                b["input"].as_object_mut().unwrap().remove("currency");
            }),
            "input",
            "currency",
        ),
        (
            "empty items",
            Box::new(|b| b["input"]["items"] = json!([])),
            "input.items",
            "at least one",
        ),
        (
            "quantity zero",
            Box::new(|b| b["input"]["items"][0]["qty"] = json!(0)),
            "input.items[0].qty",
            "at least 1",
        ),
        (
            "negative amount",
            Box::new(|b| b["input"]["amount_cents"] = json!(-5)),
            "input.amount_cents",
            "greater than 0",
        ),
        (
            "amount not a number",
            Box::new(|b| b["input"]["amount_cents"] = json!("12")),
            "input.amount_cents",
            "invalid type",
        ),
        (
            "bad currency",
            Box::new(|b| b["input"]["currency"] = json!("EURO")),
            "input.currency",
            "ISO 4217",
        ),
        (
            "unknown input field",
            Box::new(|b| b["input"]["colour"] = json!("red")),
            "input.colour",
            "unknown field",
        ),
        (
            "input not an object",
            Box::new(|b| b["input"] = json!(["o", "c", [], 1, "EUR"])),
            "input",
            "JSON object",
        ),
    ];
    for (name, change, field, message) in cases {
        let mut body = order_request("k-bad", order("o", "c", "SKU-1", 100));
        change(&mut body);
        let response = app.post_saga(&body).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let error = &problem["errors"][0];
        assert_eq!(error["field"], field, "{name}: {problem}");
        let text = error["message"].as_str().unwrap();
        assert!(text.contains(message), "{name}: {text:?} lacks {message:?}");
    }
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn unknown_and_malformed_saga_ids_are_not_found() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/v1/sagas/{unknown}"),
        format!("/v1/sagas/{unknown}?wait=1"),
        format!("/v1/sagas/{unknown}/events"),
        "/v1/sagas/not-a-uuid".to_owned(),
        "/v1/sagas/not-a-uuid/events".to_owned(),
        "/v1/nothing-here".to_owned(),
    ] {
        assert_problem(app.get(&path).await, StatusCode::NOT_FOUND).await;
    }
}

#[actix_web::test]
async fn a_bad_wait_is_a_bad_request() {
    let app = spawn_app().await;
    let id = app.start_order("k-w", order("o", "c", "SKU-1", 100)).await;
    for query in ["wait=61", "wait=soon", "wait=-1", "colour=red"] {
        let response = app.get(&format!("/v1/sagas/{id}?{query}")).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[actix_web::test]
async fn a_nul_character_is_refused_where_postgresql_could_not_store_it() {
    let app = crate::helpers::spawn_app().await;
    let body = serde_json::json!({
        "saga_type": "order", "business_key": "k\u{0}1",
        "input": crate::helpers::order("o-1", "c-1", "SKU-1", 100)
    });
    let problem =
        assert_problem(app.post_saga(&body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "business_key");
    let body =
        crate::helpers::order_request("k-2", crate::helpers::order("o-1", "c-1", "SKU\u{0}1", 100));
    let problem =
        assert_problem(app.post_saga(&body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "input.items[0].sku");
    for query in ["saga_type=%00", "business_key=a%00b"] {
        assert_problem(
            app.get(&format!("/v1/sagas?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 0);
}

#[actix_web::test]
async fn a_huge_value_is_not_echoed_whole() {
    let app = spawn_app().await;
    let huge = "x".repeat(60_000);
    let mut body = order_request("k-huge", order("o", "c", "SKU-1", 100));
    body["saga_type"] = json!(huge);
    let response = app.post_saga(&body).await;
    let length = response.content_length();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.len() < 2_000, "{} bytes", message.len());
    assert!(message.contains("characters in all"), "{message}");
    assert!(length.is_none_or(|l| l < 4_000), "{length:?}");
}

#[actix_web::test]
async fn a_wrong_method_is_405_naming_the_allowed_ones() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/v1/sagas".to_owned(), "GET, POST"),
        (reqwest::Method::PUT, format!("/v1/sagas/{id}"), "GET"),
        (
            reqwest::Method::GET,
            format!("/v1/sagas/{id}/actions/cancel"),
            "POST",
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let problem = assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(allow),
            "{problem}"
        );
    }
    let response = app.get("/v1/nothing-here").await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[actix_web::test]
async fn a_body_naming_a_key_twice_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let body = r#"{"saga_type": "order", "business_key": "k-dup", "business_key": "k-other",
        "input": {"order_id": "o", "customer_id": "c", "items": [{"sku": "S", "qty": 1}],
                  "amount_cents": 100, "currency": "EUR"}}"#;
    let response = app
        .client
        .post(format!("{}/v1/sagas", app.address))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("duplicate key `business_key`"), "{detail}");
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn a_missing_documentation_page_is_a_problem_too() {
    let app = spawn_app().await;
    for path in ["/docs/no-such-file.js", "/docs/../../etc/passwd"] {
        let response = app.get(path).await;
        let problem = assert_problem(response, StatusCode::NOT_FOUND).await;
        assert_eq!(problem["detail"], "no such resource", "{path}");
    }
    // The pages that are there are still served as they are.
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

/// The HTTP server refuses these before any code of ours runs, with an
/// empty body it does not let us change; what is checked is the status and
/// that nothing reached the store.
#[actix_web::test]
async fn requests_the_http_server_refuses_before_the_app_are_still_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let two_lengths = "POST /v1/sagas HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                       content-length: 2\r\ncontent-length: 3\r\n\r\n{}";
    for (request, status) in [(huge_header.as_str(), "431"), (two_lengths, "400")] {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port()))
            .await
            .unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut answer),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {answer}"
        );
    }
    assert_nothing_stored(&app).await;
}
