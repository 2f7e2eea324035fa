//! A `sagaplane serve` child process: the real binary, for tests that kill it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::order_request;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `sagaplane serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    /// A restart on the same port is the same node (same default node id).
    pub port: u16,
    pub client: reqwest::Client,
}

impl Server {
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Server {
        Self::start_on(free_port(), database_url, env).await
    }

    /// On `port`, e.g. the port of a server that was killed, so that its
    /// clients reconnect to the new one.
    pub async fn start_on(port: u16, database_url: &str, env: &[(&str, &str)]) -> Server {
        let output = || {
            if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let child = Command::new(env!("CARGO_BIN_EXE_sagaplane"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("SAGAPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("the binary starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::new(),
        };
        for _ in 0..300 {
            let health = server
                .client
                .get(format!("{}/healthz", server.base))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become healthy within 15 s");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("the child is killed");
        self.child.wait().expect("the child is reaped");
    }

    pub async fn start_order(&self, key: &str, order: Value) -> String {
        let response = self
            .client
            .post(format!("{}/v1/sagas", self.base))
            .json(&order_request(key, order))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    /// The saga and its history.
    pub async fn snapshot(&self, id: &str) -> (Value, Value) {
        (
            self.get(&format!("/v1/sagas/{id}")).await,
            self.get(&format!("/v1/sagas/{id}/events")).await,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No idempotency key was applied twice by the (durable) simulated participants.
pub async fn assert_no_effect_twice(pool: &sqlx::PgPool) {
    let twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM simulator_applications \
         GROUP BY idempotency_key HAVING count(*) > 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(twice, [], "effects applied more than once");
}

/// Every saga's history runs 1..=n without a gap or a duplicate, and its row's
/// version is n.
pub async fn assert_histories_whole(pool: &sqlx::PgPool) {
    let broken: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT s.id FROM sagas s JOIN saga_events e ON e.saga_id = s.id \
         GROUP BY s.id, s.version \
         HAVING min(e.seq) <> 1 OR max(e.seq) <> count(*) OR max(e.seq) <> s.version",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(broken, [], "histories with a gap or a duplicate");
}
