//! The operator console: its files served from the binary under `/console/`
//! with a strict Content-Security-Policy, `/` linking to it, the API it needs
//! (`GET /v1/me`, events `with_messages`), and the console itself driven in
//! headless Chromium (`tests/console/console.test.mjs`, playwright-core).
//!
//! The browser test needs `node`, `/usr/bin/chromium` (or
//! `SAGAPLANE_CHROMIUM`) and `npm ci` run in `tests/console`. `.ci/run` sets
//! those up and `SAGAPLANE_REQUIRE_BROWSER=1`, so there it cannot be skipped;
//! elsewhere it says why it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use sagaplane_api::auth::{Role, TokenSettings};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, order, order_request, reservation_reply_event, spawn_app_with, TempDir, TestApp,
};
use crate::versions::order_v2;

const VIEWER: &str = "console-viewer-token-0";
const OPERATOR: &str = "console-operator-token-0";
const ADMIN: &str = "console-admin-token-0123";

async fn secured_app() -> TestApp {
    secured_app_with(|_| {}).await
}

async fn secured_app_with(more: impl FnOnce(&mut sagaplane_api::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.auth.tokens = [
            ("viewer-user", VIEWER, vec![Role::Viewer]),
            ("operator-user", OPERATOR, vec![Role::Operator]),
            ("admin-user", ADMIN, vec![Role::Admin, Role::Starter]),
        ]
        .into_iter()
        .map(|(name, token, roles)| TokenSettings {
            name: name.into(),
            token: token.into(),
            roles,
        })
        .collect();
        // A release that keeps failing suspends the saga after two attempts.
        s.saga.compensation_max_attempts = 2;
        s.saga.backoff_initial_ms = 10;
        s.saga.backoff_max_ms = 20;
        more(s);
    })
    .await
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap()
}

async fn start(app: &TestApp, key: &str, sku: &str, amount_cents: i64) -> String {
    start_request(
        app,
        order_request(key, order(key, "c-1", sku, amount_cents)),
    )
    .await
}

async fn start_request(app: &TestApp, request: Value) -> String {
    let response = app
        .client
        .post(format!("{}/v1/sagas", app.address))
        .bearer_auth(ADMIN)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn settled(app: &TestApp, id: &str) -> Value {
    let response = get(app, &format!("/v1/sagas/{id}?wait=10"), Some(ADMIN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[actix_web::test]
async fn files_are_served_from_the_binary_with_their_types_and_a_strict_policy() {
    let app = secured_app().await;
    // No token is needed for the files: the data behind them needs one.
    let index = get(&app, "/console/", None).await;
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="app.js">"#),
        "{html}"
    );
    assert!(!html.contains("http://") && !html.contains("https://"));

    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("saga.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let response = get(&app, &format!("/console/{file}"), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(response.headers()["content-type"], content_type, "{file}");
        // Revalidated by its ETag: unchanged costs a 304.
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        let again = app
            .client
            .get(format!("{}/console/{file}", app.address))
            .header("If-None-Match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
    }
    assert_eq!(
        get(&app, "/console/nothing.js", None).await.status(),
        StatusCode::NOT_FOUND
    );
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/console", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/console/");
}

#[actix_web::test]
async fn another_method_on_a_console_page_is_405_naming_get() {
    let app = secured_app().await;
    for (method, path) in [
        (reqwest::Method::POST, "/console/"),
        (reqwest::Method::DELETE, "/console/app.js"),
        (reqwest::Method::PUT, "/console"),
        (reqwest::Method::POST, "/"),
        (reqwest::Method::PATCH, "/console/nothing.js"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET", "{method} {path}");
        let problem = assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(method.as_str()),
            "{problem}"
        );
    }
    // Beyond the console's pages it is still a 404.
    let response = app
        .client
        .post(format!("{}/console/a/b", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[actix_web::test]
async fn the_root_page_links_to_the_console_the_docs_and_the_metrics() {
    let app = secured_app().await;
    let root = get(&app, "/", None).await;
    assert_eq!(root.status(), StatusCode::OK);
    assert!(root.headers().contains_key("content-security-policy"));
    let html = root.text().await.unwrap();
    assert!(html.contains(r#"<a href="/console/">"#), "{html}");
    assert!(html.contains(r#"<a href="/docs/">"#), "{html}");
    assert!(html.contains(r#"<a href="/metrics">"#), "{html}");
}

#[actix_web::test]
async fn docs_without_its_slash_leads_to_the_docs_page() {
    let app = secured_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/docs/");
    // Followed, it is the docs page, open without a token like /docs/.
    let page = get(&app, "/docs", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger"));
}

#[actix_web::test]
async fn me_names_the_token_and_its_roles() {
    let app = secured_app().await;
    assert_eq!(
        get(&app, "/v1/me", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let me: Value = get(&app, "/v1/me", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({"name": "viewer-user", "access_control": true, "roles": ["viewer"]})
    );
    let me: Value = get(&app, "/v1/me", Some(ADMIN)).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["admin", "starter"]));

    let open = spawn_app_with(|_| {}).await;
    let me: Value = get(&open, "/v1/me", None).await.json().await.unwrap();
    assert_eq!(
        me,
        json!({"name": "anonymous", "access_control": false,
               "roles": ["starter", "viewer", "operator", "admin", "participant"]})
    );
}

#[actix_web::test]
async fn events_with_messages_show_each_steps_commands_and_the_reply_that_caused_it() {
    let app = secured_app().await;
    let id = start(&app, "msgs-1", "BOOK-1", 500).await;
    assert_eq!(settled(&app, &id).await["status"], "completed");
    assert!(app.all_marked_sent().await);
    let events: Vec<Value> = get(
        &app,
        &format!("/v1/sagas/{id}/events?with_messages=true"),
        Some(VIEWER),
    )
    .await
    .json()
    .await
    .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "SagaStarted",
            "InventoryReserved",
            "PaymentCharged",
            "OrderConfirmed"
        ]
    );
    let sent: Vec<Vec<&str>> = events
        .iter()
        .map(|e| {
            e["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["step"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        sent,
        [
            vec!["reserve-inventory"],
            vec!["charge-payment"],
            vec!["confirm-order"],
            vec![]
        ]
    );
    let first = &events[0]["commands"][0];
    assert_eq!(first["participant"], "inventory");
    assert_eq!(first["command_type"], "order.inventory.reserve.v1");
    assert_eq!(first["transport"], "in-process");
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["publish_attempts"], 0);
    assert_eq!(first["dead_lettered"], false);
    assert!(first["sent_at"].is_string(), "{first}");
    assert_eq!(first["trace_id"].as_str().unwrap().len(), 32);
    // The start was caused by no reply; each success by the reply to the
    // command before it.
    assert!(events[0].get("caused_by").is_none());
    for (i, e) in events.iter().enumerate().skip(1) {
        let command = &events[i - 1]["commands"][0]["message_id"];
        let reply = &e["caused_by"];
        assert_eq!(reply["outcome"], "applied", "{e}");
        assert!(
            reply["message_id"]
                .as_str()
                .unwrap()
                .starts_with(command.as_str().unwrap()),
            "the simulated participants name their reply after the command: {e}"
        );
    }
    // Without the flag the events are as before.
    let plain: Vec<Value> = get(&app, &format!("/v1/sagas/{id}/events"), Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert!(plain
        .iter()
        .all(|e| e.get("commands").is_none() && e.get("caused_by").is_none()));
}

/// The first page of `GET /v1/sagas`.
async fn listed(app: &TestApp) -> Vec<Value> {
    let page: Value = get(app, "/v1/sagas", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn the_list_says_what_each_saga_waits_for() {
    let app = secured_app().await;
    let suspended = start(&app, "list-stuck", "STUCK-1", 2_000_000).await;
    assert_eq!(settled(&app, &suspended).await["status"], "suspended");
    let waiting = start(&app, "list-waiting", "HANG-1", 500).await;
    let done = start(&app, "list-done", "BOOK-1", 500).await;
    assert_eq!(settled(&app, &done).await["status"], "completed");

    let find = |items: &[Value], id: &str| {
        items
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} is listed"))
            .clone()
    };
    let items = listed(&app).await;
    // Each unfinished saga of the list says what its own read says it waits for.
    for id in [&suspended, &waiting] {
        let row = find(&items, id);
        let one: Value = get(&app, &format!("/v1/sagas/{id}"), Some(VIEWER))
            .await
            .json()
            .await
            .unwrap();
        let w = &one["waiting_for"];
        assert_eq!(row["current_step"], w["step"], "{row}");
        assert_eq!(row["participant"], w["participant"], "{row}");
        assert_eq!(row["attempt"], w["attempt"], "{row}");
        assert_eq!(row["max_attempts"], w["max_attempts"], "{row}");
        assert_eq!(row["step_since"], w["since"], "{row}");
        assert_eq!(row["next_wake_at"], one["next_wake_at"], "{row}");
        assert_eq!(row["last_error"], one["last_error"], "{row}");
        assert!(row.get("waiting_for").is_none(), "{row}");
    }
    let row = find(&items, &suspended);
    assert_eq!(
        (&row["participant"], &row["attempt"], &row["max_attempts"]),
        (&json!("inventory"), &json!(2), &json!(2)),
        "{row}"
    );
    assert!(row["last_error"].is_string(), "{row}");
    let row = find(&items, &waiting);
    assert_eq!(row["current_step"], "reserve-inventory", "{row}");
    assert!(row["next_wake_at"].is_string(), "{row}");
    let row = find(&items, &done);
    assert!(
        row["participant"].is_null() && row["max_attempts"].is_null(),
        "{row}"
    );

    // A row written before the read model kept them is completed from its
    // saga's history.
    sqlx::query("UPDATE sagas SET participant = NULL, max_attempts = NULL WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&suspended).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let row = find(&listed(&app).await, &suspended);
    assert_eq!(
        (&row["participant"], &row["max_attempts"]),
        (&json!("inventory"), &json!(2)),
        "{row}"
    );
}

#[actix_web::test]
async fn a_saga_names_its_own_trace() {
    let app = secured_app().await;
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .client
        .post(format!("{}/v1/sagas", app.address))
        .bearer_auth(ADMIN)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&order_request(
            "traced",
            order("traced", "c-1", "HANG-1", 500),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let traced = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let untraced = start(&app, "untraced", "BOOK-1", 500).await;
    assert_eq!(settled(&app, &untraced).await["status"], "completed");

    // The trace the start request named, which its commands carry too.
    let saga: Value = get(&app, &format!("/v1/sagas/{traced}"), Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(saga["trace_id"], TRACE, "{saga}");
    let events: Vec<Value> = get(
        &app,
        &format!("/v1/sagas/{traced}/events?with_messages=true"),
        Some(VIEWER),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(events[0]["commands"][0]["trace_id"], TRACE);
    // One started without a trace has a new one of its own.
    let other: Value = get(&app, &format!("/v1/sagas/{untraced}"), Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    let own = other["trace_id"].as_str().unwrap();
    assert!(
        own.len() == 32 && own.bytes().all(|b| b.is_ascii_hexdigit()) && own != TRACE,
        "{other}"
    );
    // The list shows it too.
    let row = listed(&app)
        .await
        .into_iter()
        .find(|s| s["id"] == traced.as_str())
        .unwrap();
    assert_eq!(row["trace_id"], TRACE, "{row}");
}

fn node() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
}

fn chromium() -> PathBuf {
    std::env::var_os("SAGAPLANE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/console")
}

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if node().is_none() {
        return Some("node is not on PATH".into());
    }
    if !chromium().is_file() {
        return Some(format!("{} is missing", chromium().display()));
    }
    if !scripts().join("node_modules/playwright-core").is_dir() {
        return Some("playwright-core is not installed (npm ci in tests/console)".into());
    }
    None
}

#[actix_web::test]
async fn in_headless_chromium() {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("SAGAPLANE_REQUIRE_BROWSER").is_none(),
            "the browser test is required here, but {why}"
        );
        eprintln!(
            "SKIPPED: {why}; `bash .ci/run` installs chromium and runs npm ci in tests/console"
        );
        return;
    }
    // A second version of the order saga is loaded, so a saga can be migrated.
    let folder = TempDir::new();
    let v2 = order_v2(&folder);
    let app = secured_app_with(|s| {
        s.definitions.paths = vec![v2];
        // The sagas waiting for a reply must not time out and move on while
        // a page shows them: on a loaded machine the run passes 30 s, and a
        // preview of a saga that moved meanwhile is refused as stale.
        s.saga.step_timeout_ms = 600_000;
    })
    .await;
    let resume = start(&app, "stuck-1", "STUCK-1", 2_000_000).await;
    let stale = start(&app, "stuck-2", "STUCK-1", 2_000_000).await;
    let bulk = [
        start(&app, "stuck-3", "STUCK-1", 2_000_000).await,
        start(&app, "stuck-4", "STUCK-1", 2_000_000).await,
    ];
    for id in [&resume, &stale, &bulk[0], &bulk[1]] {
        assert_eq!(settled(&app, id).await["status"], "suspended");
    }
    // The inventory team fixed the release: a resume now goes through.
    app.participants.repair();
    let view = start(&app, "waiting-1", "HANG-1", 500).await;
    // A reply kept as a dead letter (it came before its saga was visible,
    // say); its saga is there now, so a redrive applies it.
    let waiting = start(&app, "waiting-2", "HANG-1", 500).await;
    let raw = serde_json::to_vec(&reservation_reply_event(&waiting, "r-console")).unwrap();
    let dead_letter: i64 = sqlx::query_scalar(
        "INSERT INTO dead_letters (channel, reason, raw) VALUES ('in-process', 'no saga', $1) RETURNING id",
    )
    .bind(&raw)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // One that nothing can use, for a discard.
    let unusable: i64 = sqlx::query_scalar(
        "INSERT INTO dead_letters (channel, reason, raw) VALUES ('in-process', 'not a CloudEvent', $1) RETURNING id",
    )
    .bind(b"{\"hello\": \"world\"}".as_slice())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // Sagas waiting for inventory's reply: one for a skip, one acted on with
    // the keyboard alone, and one under version 1, for a migration to 2.
    let skip = start(&app, "waiting-3", "HANG-1", 500).await;
    let keyboard = start(&app, "waiting-4", "HANG-1", 500).await;
    let mut pinned = order_request("waiting-5", order("waiting-5", "c-1", "HANG-1", 500));
    pinned["version"] = json!(1);
    let migrate = start_request(&app, pinned).await;
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let output = {
        let env = [
            ("SAGAPLANE_URL", app.address.clone()),
            ("VIEWER_TOKEN", VIEWER.into()),
            ("OPERATOR_TOKEN", OPERATOR.into()),
            ("ADMIN_TOKEN", ADMIN.into()),
            ("RESUME_SAGA", resume.clone()),
            ("STALE_SAGA", stale.clone()),
            ("VIEW_SAGA", view.clone()),
            ("BULK_SAGAS", bulk.join(",")),
            ("DEAD_LETTER", dead_letter.to_string()),
            ("DISCARD_LETTER", unusable.to_string()),
            ("SKIP_SAGA", skip.clone()),
            ("KEYBOARD_SAGA", keyboard.clone()),
            ("MIGRATE_SAGA", migrate.clone()),
            ("ARTIFACTS", artifacts.display().to_string()),
            ("CHROMIUM", chromium().display().to_string()),
        ];
        tokio::task::spawn_blocking(move || {
            Command::new(node().unwrap())
                .arg("console.test.mjs")
                .current_dir(scripts())
                .envs(env)
                .output()
                .expect("node runs")
        })
        .await
        .unwrap()
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\nscreenshots in {}", artifacts.display());
    assert!(
        output.status.success(),
        "the console tests failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(settled(&app, &resume).await["status"], "compensated");
    let events: Vec<Value> = get(&app, &format!("/v1/sagas/{waiting}/events"), Some(ADMIN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events[1]["type"], "InventoryReserved", "redriven");
    // What the browser did, as the API sees it.
    assert_eq!(settled(&app, &keyboard).await["status"], "cancelled");
    let skipped: Vec<Value> = get(&app, &format!("/v1/sagas/{skip}/events"), Some(ADMIN))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        skipped
            .iter()
            .any(|e| e["type"] == "StepFailed" && e["data"]["cause"] == "operator"),
        "{skipped:?}"
    );
    let migrated = get(&app, &format!("/v1/sagas/{migrate}"), Some(ADMIN))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        migrated["progress"]["definition"]["version"], 2,
        "{migrated}"
    );
    let letter = get(&app, &format!("/v1/dead-letters/{unusable}"), Some(ADMIN))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(letter["resolution"], "discarded", "{letter}");
}
