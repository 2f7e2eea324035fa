//! A `sagaplane serve` child process: the real binary, for tests that kill it.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use crate::helpers::{order, order_request};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A free port outside the kernel's range for port 0 and outgoing
/// connections (`ip_local_port_range`), for a server that is killed and
/// started again on it: while it is down, no other test's server or
/// connection can be given the port.
pub fn restart_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if low > 11_000 {
        for _ in 0..100 {
            let port = fastrand::u16(10_000..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    free_port()
}

/// Settings of a server under faults: durable participants answering a
/// little late, short timeouts and back-offs, and attempts enough that the
/// faults alone never exhaust a step's budget.
pub const FAULT_ENV: &[(&str, &str)] = &[
    ("SAGAPLANE_SIMULATOR__DURABLE_MEMORY", "true"),
    ("SAGAPLANE_SIMULATOR__LATENCY_MS", "15"),
    ("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", "1000"),
    ("SAGAPLANE_SAGA__STEP_MAX_ATTEMPTS", "50"),
    ("SAGAPLANE_SAGA__COMPENSATION_MAX_ATTEMPTS", "50"),
    ("SAGAPLANE_SAGA__BACKOFF_INITIAL_MS", "50"),
    ("SAGAPLANE_SAGA__BACKOFF_MAX_MS", "200"),
    ("SAGAPLANE_ORCHESTRATOR__TIMER_INTERVAL_MS", "50"),
    ("SAGAPLANE_ORCHESTRATOR__OUTBOX_SWEEP_INTERVAL_MS", "300"),
];

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
        Self::start_on(restart_port(), database_url, env).await
    }

    /// On `port`, e.g. the port of a server that was killed, so that its
    /// clients reconnect to the new one.
    pub async fn start_on(port: u16, database_url: &str, env: &[(&str, &str)]) -> Server {
        Self::start_with(port, Some(database_url), env).await
    }

    /// On `port`, with `DATABASE_URL` set to `database_url` or, for `None`,
    /// removed (the settings in `env` then say where the database is).
    pub async fn start_with(port: u16, database_url: Option<&str>, env: &[(&str, &str)]) -> Server {
        let output = || {
            if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_sagaplane"));
        match database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
        let child = command
            .arg("serve")
            .env("SAGAPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("the binary starts");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::new(),
        };
        for _ in 0..300 {
            if let Some(status) = server.exited() {
                panic!("the server exited while starting: {status}");
            }
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

    /// How the process ended, if it has (it is reaped then).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("the child can be waited for")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as a service manager stops it: waits (up to 30 s) for the
    /// process to end and returns how it ended.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a PID");
        // SAFETY: kill has no memory preconditions; the PID is our child's,
        // not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..600 {
            if let Some(status) = self.exited() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not stop within 30 s of SIGTERM");
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

/// One saga of a load under faults: its input and what must become of it.
pub struct Case {
    pub key: String,
    pub order: Value,
    pub status: &'static str,
    /// Steps whose effect must be applied, exactly once.
    pub required: &'static [&'static str],
}

/// `n` order sagas, a quarter of them completing and the rest compensating
/// at each of the three places an order can fail.
pub fn cases(n: usize) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let key = format!("k-{i}");
            let (order, status, required): (Value, _, &'static [&'static str]) = match i % 4 {
                0 => (
                    order(&key, "c", "OOS-1", 100),
                    "compensated",
                    &["cancel-order"],
                ),
                1 => (
                    order(&key, "c", "SKU-1", 5_000_000),
                    "compensated",
                    &["reserve-inventory", "release-inventory", "cancel-order"],
                ),
                2 => (
                    order(&format!("NOCONFIRM-{i}"), "c", "SKU-1", 100),
                    "compensated",
                    &[
                        "reserve-inventory",
                        "charge-payment",
                        "refund-payment",
                        "release-inventory",
                        "cancel-order",
                    ],
                ),
                _ => (
                    order(&key, "c", "SKU-1", 100),
                    "completed",
                    &["reserve-inventory", "charge-payment", "confirm-order"],
                ),
            };
            Case {
                key,
                order,
                status,
                required,
            }
        })
        .collect()
}

/// How many commands the simulated participants received more than once
/// (`simulator.durable_memory`): published again after a restart, or asked
/// again after a timeout.
pub async fn redelivered_commands(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM simulator_deliveries \
         GROUP BY idempotency_key HAVING count(*) > 1) AS redelivered",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// How many step attempts timed out (and were asked again).
pub async fn timed_out_steps(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM saga_events \
         WHERE event_type = 'StepFailed' AND data->>'cause' = 'timed_out'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits (until `deadline`) for each saga of `ids` (case index → saga id) to
/// settle, and asserts it ended as its case dictates.
pub async fn assert_settled_as_dictated(
    server: &Server,
    cases: &[Case],
    ids: &HashMap<usize, String>,
    deadline: Instant,
) {
    for (i, id) in ids {
        let case = &cases[*i];
        let saga = loop {
            let saga = server.get(&format!("/v1/sagas/{id}?wait=5")).await;
            let status = saga["status"].as_str().unwrap().to_owned();
            if ["completed", "compensated", "cancelled", "suspended"].contains(&status.as_str())
                || Instant::now() > deadline
            {
                break saga;
            }
        };
        assert_eq!(saga["status"], case.status, "saga {}: {saga}", case.key);
    }
}

/// Starts `case` through any of `bases` (`pick` chooses the next to try),
/// retrying through outages until `deadline`: connection errors, timeouts and
/// 5xx. The business key makes a repeat the same saga; the saga's id.
pub async fn start_retrying(
    client: &reqwest::Client,
    bases: &[String],
    mut pick: impl FnMut() -> usize,
    case: &Case,
    deadline: Instant,
) -> String {
    let body = order_request(&case.key, case.order.clone());
    loop {
        assert!(Instant::now() < deadline, "saga {} never started", case.key);
        let sent = client
            .post(format!("{}/v1/sagas", bases[pick() % bases.len()]))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status();
            if let Ok(saga) = r.json::<Value>().await {
                if [StatusCode::OK, StatusCode::CREATED].contains(&status) {
                    return saga["id"].as_str().unwrap().to_owned();
                }
                assert!(
                    status.is_server_error(),
                    "saga {}: start answered {status}: {saga}",
                    case.key
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each saga of `ids` (case index → saga id) applied its case's required
/// effects; any other effect is the undo of a step that timed out (it may
/// have been applied, so it is compensated); no effect belongs to a saga
/// outside `ids`.
pub async fn assert_effects_as_dictated(
    pool: &sqlx::PgPool,
    cases: &[Case],
    ids: &HashMap<usize, String>,
) {
    let applied: Vec<(String,)> =
        sqlx::query_as("SELECT idempotency_key FROM simulator_applications")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut by_saga: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (key,) in applied {
        let (saga, step) = key.split_once(':').expect("keys are <saga>:<step>");
        by_saga.entry(saga.into()).or_default().insert(step.into());
    }
    for (i, id) in ids {
        let case = &cases[*i];
        let steps = by_saga.remove(id).unwrap_or_default();
        for required in case.required {
            assert!(
                steps.contains(*required),
                "saga {}: {required} missing from {steps:?}",
                case.key
            );
        }
        for step in &steps {
            assert!(
                case.required.contains(&step.as_str())
                    || ["release-inventory", "refund-payment"].contains(&step.as_str()),
                "saga {}: unexpected effect {step} in {steps:?}",
                case.key
            );
        }
    }
    assert!(by_saga.is_empty(), "effects for unknown sagas: {by_saga:?}");
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
