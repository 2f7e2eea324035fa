//! `spawn_app()` and a client with one method per endpoint.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sagaplane_adapters::{SimulatedParticipants, SimulatorRule};
use sagaplane_api::{telemetry, Application, Settings};
use sagaplane_orchestrator::codec::{self, CloudEvent};
use sagaplane_orchestrator::Orchestrator;
use sagaplane_sagas::{Outcome, Reply};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        // Tests export nothing: the guard may go at once.
        let _ = telemetry::init("info,sagaplane=debug", false);
    }
});

/// Panics on the thread of each [`Node`] (its actors, timers and relay; not
/// its HTTP workers, which have threads of their own), by thread name. Most
/// are caught where they happen (a task's, a saga actor's) and end nothing, so
/// a node's end asks here whether its thread had any.
static NODE_PANICS: LazyLock<std::sync::Mutex<Vec<(String, String)>>> = LazyLock::new(|| {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if let Some(name) = thread.name().filter(|n| n.starts_with("node-")) {
            let mut panics = NODE_PANICS.lock().unwrap_or_else(|e| e.into_inner());
            panics.push((name.to_owned(), info.to_string()));
        }
        previous(info);
    }));
    std::sync::Mutex::new(Vec::new())
});

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("SAGAPLANE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A URL for a database no other test uses (created on first connect).
pub fn fresh_database_url() -> String {
    format!(
        "{}/sagaplane_test_{}",
        server_url(),
        Uuid::new_v4().simple()
    )
}

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub orchestrator: Orchestrator,
    pub participants: SimulatedParticipants,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the application in this test's actix system on a random port.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(&fresh_database_url(), configure).await
}

/// As [`spawn_app_with`], on `database_url`: e.g. the database of an
/// application stopped before, to see what a restart finds there.
pub async fn spawn_app_on(database_url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let settings = test_settings(database_url, configure);
    let app = Application::build(settings.clone())
        .await
        .expect("the application starts");
    let (port, orchestrator, participants) = (app.port(), app.orchestrator(), app.participants());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp::connect(&settings, port, orchestrator, participants).await
}

/// The settings every test application starts from, then `configure`d.
pub fn test_settings(database_url: &str, configure: impl FnOnce(&mut Settings)) -> Settings {
    LazyLock::force(&TRACING);
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.database.url = Some(database_url.to_owned());
    settings.database.max_connections = 8;
    settings.http.workers = 1;
    configure(&mut settings);
    settings
}

/// An application in an actix system of its own, on a thread of its own, so
/// that it can be stopped: [`Node::stop`] ends that system and with it every
/// actor, timer, participant and connection of the application, as if its
/// process had exited. Its database stays, for [`spawn_app_on`].
pub struct Node {
    pub app: TestApp,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    name: String,
}

pub async fn start_node(database_url: &str, configure: impl FnOnce(&mut Settings)) -> Node {
    let settings = test_settings(database_url, configure);
    let (ready, started) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let build = settings.clone();
    LazyLock::force(&NODE_PANICS);
    let name = format!("node-{}", Uuid::new_v4().simple());
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = match Application::build(build).await {
                    Ok(app) => app,
                    Err(e) => return drop(ready.send(Err(format!("{e:#}")))),
                };
                let handles = (app.port(), app.orchestrator(), app.participants());
                actix_web::rt::spawn(app.run_until_stopped());
                if ready.send(Ok(handles)).is_ok() {
                    let _ = stopped.await;
                }
            });
        })
        .expect("the node's thread starts");
    let (port, orchestrator, participants) = started
        .await
        .expect("the node's thread answers")
        .unwrap_or_else(|e| panic!("the application starts: {e}"));
    Node {
        app: TestApp::connect(&settings, port, orchestrator, participants).await,
        stop,
        thread,
        name,
    }
}

impl Node {
    /// Stops the application and waits until its system is gone and it
    /// answers no request, even on a connection the test's client keeps open;
    /// fails if anything on its thread panicked, caught or not.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join().expect("the node stops cleanly"))
            .await
            .unwrap();
        // The HTTP workers are threads of their own that notice the end of
        // the system a moment later; until then one may still serve a kept
        // connection.
        let healthz = format!("{}/healthz", self.app.address);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.app.client.get(&healthz).send().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the node still answers 5 s after it stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let panics: Vec<String> = NODE_PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(thread, _)| *thread == self.name)
            .map(|(_, panic)| panic.clone())
            .collect();
        assert!(panics.is_empty(), "the node's thread panicked: {panics:#?}");
    }
}

/// A folder of its own under the system's temporary folder, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("sagaplane-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("a temporary folder");
        Self(path)
    }

    /// Writes `contents` to `name` in the folder; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("the file is written");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An order-saga start request body.
pub fn order_request(key: &str, order: Value) -> Value {
    json!({ "saga_type": "order", "business_key": key, "input": order })
}

/// A valid order; tests change the fields that drive the simulated participants.
pub fn order(order_id: &str, customer_id: &str, sku: &str, amount_cents: i64) -> Value {
    json!({
        "order_id": order_id,
        "customer_id": customer_id,
        "items": [{ "sku": sku, "qty": 2 }],
        "amount_cents": amount_cents,
        "currency": "EUR"
    })
}

impl TestApp {
    async fn connect(
        settings: &Settings,
        port: u16,
        orchestrator: Orchestrator,
        participants: SimulatedParticipants,
    ) -> TestApp {
        let url = settings
            .database
            .url
            .clone()
            .expect("tests name their database");
        let pool = PgPool::connect(&url)
            .await
            .expect("the test database accepts connections");
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            database_url: url,
            client: reqwest::Client::new(),
            pool,
            orchestrator,
            participants,
        }
    }

    /// The port the application listens on.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub async fn post_saga(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/sagas", self.address))
            .json(body)
            .send()
            .await
            .expect("POST /v1/sagas answers")
    }

    /// Starts an order saga and returns its id; panics unless it was created.
    pub async fn start_order(&self, key: &str, order: Value) -> String {
        let response = self.post_saga(&order_request(key, order)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// Starts a saga from a whole request body and returns its id; panics,
    /// showing the answer, unless it was created.
    pub async fn start(&self, body: &Value) -> String {
        let response = self.post_saga(body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    /// The definition (type, version, hash) a saga's `SagaStarted` records.
    pub async fn started_under(&self, id: &str) -> Value {
        let events = self.events(id).await;
        assert_eq!(events[0]["type"], "SagaStarted");
        events[0]["data"]["definition"].clone()
    }

    /// `POST /v1/sagas/{id}/actions/{action}`, with `If-Match` when given.
    pub async fn act(
        &self,
        id: &str,
        action: &str,
        body: Value,
        if_match: Option<&str>,
        dry_run: bool,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!(
                "{}/v1/sagas/{id}/actions/{action}?dry_run={dry_run}",
                self.address
            ))
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        request.send().await.expect("the action answers")
    }

    /// The saga as `GET /v1/sagas/{id}` shows it now.
    pub async fn saga(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/sagas/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET answers")
    }

    /// The saga once settled; panics if it does not settle within 10 s.
    pub async fn settled(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/sagas/{id}?wait=10")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let saga: Value = response.json().await.unwrap();
        let status = saga["status"].as_str().unwrap();
        assert!(
            ["completed", "compensated", "cancelled", "suspended"].contains(&status),
            "saga {id} did not settle: {saga}"
        );
        saga
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let response = self.get(&format!("/v1/sagas/{id}/events")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn event_types(&self, id: &str) -> Vec<String> {
        self.events(id)
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The steps commanded for a saga, in the order they were committed.
    pub async fn commanded_steps(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT step FROM commands WHERE saga_id = $1::uuid ORDER BY message_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// The value of one `/metrics` sample (name with its labels, exactly), 0
    /// when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Whether every committed command is marked sent within 5 s.
    pub async fn all_marked_sent(&self) -> bool {
        all_marked_sent(&self.pool).await
    }

    /// Polls `check` every 20 ms for up to `limit`; true once it holds.
    pub async fn eventually<F, Fut>(&self, limit: Duration, check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        eventually(limit, check).await
    }
}

/// Asserts an RFC 9457 body with `status`; returns it.
pub async fn assert_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The reply CloudEvent a participant sends when `saga_id`'s first
/// reservation succeeded.
pub fn reservation_reply_event(saga_id: &str, reply_id: &str) -> CloudEvent {
    let command = CloudEvent {
        specversion: "1.0".into(),
        id: format!("command-of-{reply_id}"),
        source: "sagaplane".into(),
        event_type: "order.inventory.reserve.v1".into(),
        subject: Some(saga_id.into()),
        time: None,
        datacontenttype: None,
        data: Value::Null,
        correlationid: Some(saga_id.into()),
        causationid: None,
        idempotencykey: Some(format!("{saga_id}:reserve-inventory")),
        traceparent: None,
        sagastep: Some("reserve-inventory".into()),
        sagaattempt: Some(1),
    };
    let reply = Reply {
        step: "reserve-inventory".into(),
        attempt: 1,
        outcome: Outcome::Succeeded,
        at: chrono::Utc::now(),
        result: None,
    };
    codec::reply_event(&command, reply_id.into(), "inventory", &reply)
}

/// A simulator rule under which inventory never answers orders for `AWS-`
/// SKUs, as if its commands went to AWS: its replies come in through the
/// EventBridge ingress.
pub fn inventory_answers_through_eventbridge() -> SimulatorRule {
    SimulatorRule {
        participant: "inventory".into(),
        command: Some("order.inventory.reserve.v1".into()),
        field: Some("items[*].sku".into()),
        starts_with: Some("AWS-".into()),
        answer: "never".into(),
        ..SimulatorRule::default()
    }
}

/// Polls `check` every 20 ms for up to `limit`; true once it holds.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Polls a `check` that need not wait every 20 ms for up to `limit`, and
/// once more at the end; true once it holds.
pub async fn until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Whether every committed command in `pool`'s database is marked sent
/// within 5 s: the relay marks them together, a little after they went out,
/// and one not yet marked would be published again after a restart.
pub async fn all_marked_sent(pool: &PgPool) -> bool {
    let unsent = "SELECT count(*) FROM commands WHERE sent_at IS NULL";
    eventually(Duration::from_secs(5), || async {
        sqlx::query_scalar::<_, i64>(unsent)
            .fetch_one(pool)
            .await
            .unwrap()
            == 0
    })
    .await
}
