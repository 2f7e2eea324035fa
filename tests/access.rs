//! Access control: every role against every class of route, and what stays open.

use reqwest::{Method, StatusCode};
use sagaplane_api::auth::{Role, TokenSettings};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, order, order_request, spawn_app_with, TestApp};

const TOKENS: [(&str, Role); 4] = [
    ("starter-token-0123", Role::Starter),
    ("viewer-token-01234", Role::Viewer),
    ("operator-token-012", Role::Operator),
    ("admin-token-012345", Role::Admin),
];

async fn secured_app() -> TestApp {
    spawn_app_with(|s| {
        s.auth.tokens = TOKENS
            .iter()
            .map(|(token, role)| TokenSettings {
                name: format!("{}-user", role.as_str()),
                token: (*token).into(),
                roles: vec![*role],
            })
            .collect();
    })
    .await
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    request.send().await.unwrap()
}

#[actix_web::test]
async fn every_role_against_every_route_class() {
    let app = secured_app().await;
    // A saga to read and act on, started with the starter's token.
    let response = call(
        &app,
        Method::POST,
        "/v1/sagas",
        Some(order_request("acl-0", order("acl-0", "c", "HANG-1", 5))),
        Some("starter-token-0123"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // (method, path, body, the roles allowed)
    let classes: Vec<(Method, String, Option<Value>, Vec<Role>)> = vec![
        (
            Method::POST,
            "/v1/sagas".into(),
            Some(order_request("acl-1", order("acl-1", "c", "HANG-1", 5))),
            vec![Role::Starter],
        ),
        (
            Method::GET,
            format!("/v1/sagas/{id}"),
            None,
            vec![Role::Viewer, Role::Operator, Role::Admin],
        ),
        (
            Method::GET,
            "/v1/sagas".into(),
            None,
            vec![Role::Viewer, Role::Operator, Role::Admin],
        ),
        (
            Method::GET,
            format!("/v1/sagas/{id}/events"),
            None,
            vec![Role::Viewer, Role::Operator, Role::Admin],
        ),
        (
            Method::GET,
            "/v1/stats".into(),
            None,
            vec![Role::Viewer, Role::Operator, Role::Admin],
        ),
        (
            Method::GET,
            "/metrics".into(),
            None,
            vec![Role::Viewer, Role::Operator, Role::Admin],
        ),
        (
            Method::POST,
            format!("/v1/sagas/{id}/actions/retry?dry_run=true"),
            Some(json!({ "reason": "acl" })),
            vec![Role::Operator, Role::Admin],
        ),
        (
            Method::GET,
            "/v1/dead-letters".into(),
            None,
            vec![Role::Admin],
        ),
        (
            Method::POST,
            "/v1/dead-letters/1/discard".into(),
            Some(json!({ "reason": "acl" })),
            vec![Role::Admin],
        ),
    ];
    for (method, path, body, allowed) in &classes {
        for bad in [None, Some("wrong-token")] {
            let r = call(&app, method.clone(), path, body.clone(), bad).await;
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            assert_problem(r, StatusCode::UNAUTHORIZED).await;
        }
        for (token, role) in TOKENS {
            let r = call(&app, method.clone(), path, body.clone(), Some(token)).await;
            if allowed.contains(&role) {
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status()),
                    "{method} {path} as {role:?}: {}",
                    r.status()
                );
                assert!(!r.status().is_server_error(), "{method} {path}");
            } else {
                let body = assert_problem(r, StatusCode::FORBIDDEN).await;
                assert!(body["detail"].as_str().unwrap().contains("role"), "{body}");
            }
        }
    }

    // Health, readiness, the document and the docs page need no token.
    for open in ["/healthz", "/openapi.json", "/docs/"] {
        let r = call(&app, Method::GET, open, None, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{open}");
    }
    // Ready or not (recovery may still run), never a question of access.
    let r = call(&app, Method::GET, "/readyz", None, None).await;
    assert!([StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&r.status()));
}

#[actix_web::test]
async fn an_intervention_records_the_token_holder_not_the_body() {
    let app = secured_app().await;
    let response = call(
        &app,
        Method::POST,
        "/v1/sagas",
        Some(order_request("who-1", order("who-1", "c", "HANG-1", 5))),
        Some("starter-token-0123"),
    )
    .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        &app,
        Method::POST,
        &format!("/v1/sagas/{id}/actions/cancel"),
        Some(json!({ "reason": "test", "operator": "someone-else" })),
        Some("operator-token-012"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["events"][0]["data"]["operator"], "operator-user");
}
