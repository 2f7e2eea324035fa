//! The EventBridge publisher through the real AWS SDK against moto, a local
//! AWS emulator (started and stopped here by PID): a bus with a rule sending
//! every command to an SQS queue, read back with boto3.
//!
//! `.ci/run` installs moto into its virtualenv and requires this test
//! (`SAGAPLANE_REQUIRE_MOTO=1`); elsewhere it runs when it finds
//! `moto_server` there and says why when it does not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use sagaplane_adapters::{EventBridgeSettings, EventBridgeTransport};
use sagaplane_orchestrator::ports::{OutboxMessage, PublishError, Transport};
use sagaplane_sagas::SagaId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::server::free_port;

pub fn venv() -> Option<PathBuf> {
    let venv = std::env::var_os("SAGAPLANE_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sagaplane-venv"))
        })?;
    venv.join("bin/moto_server").is_file().then_some(venv)
}

/// A moto server on 127.0.0.1, killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    venv: PathBuf,
}

impl Moto {
    pub async fn start(venv: &Path, port: u16) -> Moto {
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto {
            child,
            port,
            venv: venv.to_path_buf(),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(moto.url()).send().await.is_ok() {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto did not start within 10 s");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `tests/support/aws.py` against this moto; its output lines.
    pub async fn aws(&self, args: &[&str]) -> Vec<String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/aws.py");
        let mut command = Command::new(self.venv.join("bin/python"));
        command
            .arg(script)
            .args(args)
            .env("AWS_ENDPOINT_URL", self.url())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "aws.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(i: usize, data: Value) -> OutboxMessage {
    let saga = SagaId::from_uuid(Uuid::now_v7());
    OutboxMessage {
        message_id: Uuid::now_v7(),
        saga_id: saga,
        saga_type: "order".into(),
        step: "reserve-inventory".into(),
        attempt: 1,
        participant: "inventory".into(),
        command_type: "order.inventory.reserve.v1".into(),
        idempotency_key: format!("{saga}:reserve-inventory"),
        data: json!({ "n": i, "payload": data }),
        created_at: Utc::now(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        publish_attempts: 0,
    }
}

/// The bus `sagas` on moto at `port`.
pub fn moto_settings(port: u16) -> EventBridgeSettings {
    EventBridgeSettings {
        bus: "sagas".into(),
        region: "us-east-1".into(),
        endpoint_url: format!("http://127.0.0.1:{port}"),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        ..EventBridgeSettings::default()
    }
}

async fn transport(port: u16) -> EventBridgeTransport {
    EventBridgeTransport::new(moto_settings(port)).await
}

#[tokio::test]
async fn commands_reach_the_bus_as_cloudevents_and_an_outage_fails_them_transiently() {
    let Some(venv) = venv() else {
        assert!(
            std::env::var_os("SAGAPLANE_REQUIRE_MOTO").is_none(),
            "moto is required here but was not found"
        );
        eprintln!("SKIPPED: moto_server not found; `bash .ci/run` installs it into ~/.cache/sagaplane-venv");
        return;
    };
    let port = free_port();
    let moto = Moto::start(&venv, port).await;
    let queue = moto.aws(&["setup", "sagas", "commands"]).await[0].clone();
    let publisher = transport(port).await;

    // 25 commands: three requests of at most ten entries.
    let messages: Vec<OutboxMessage> = (0..25).map(|i| command(i, json!("x"))).collect();
    publisher.publish(&messages).await.expect("all published");
    let bodies = moto.aws(&["receive", &queue, "25"]).await;
    assert!(bodies.len() >= 25, "every command reached the queue");
    let mut seen = Vec::new();
    for body in &bodies {
        let envelope: Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["source"], "sagaplane");
        assert_eq!(envelope["detail-type"], "order.inventory.reserve.v1");
        let event = &envelope["detail"];
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "order.inventory.reserve.v1");
        let m = messages
            .iter()
            .find(|m| m.message_id.to_string() == event["id"].as_str().unwrap())
            .expect("a command we sent");
        assert_eq!(event["subject"], m.saga_id.to_string());
        assert_eq!(event["idempotencykey"], m.idempotency_key);
        assert_eq!(event["traceparent"], m.traceparent.clone().unwrap());
        assert_eq!(event["sagastep"], "reserve-inventory");
        assert_eq!(event["data"], m.data);
        seen.push(m.message_id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);

    // A command larger than any request is refused for good; the others go.
    let big = command(99, json!("y".repeat(300 * 1024)));
    let small = command(100, json!("z"));
    let err = publisher
        .publish(&[big.clone(), small.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.failed.len(), 1);
    assert_eq!(err.failed[0].0, big.message_id);
    assert!(err.failed[0].1.permanent, "{:?}", err.failed[0].1);
    let bodies = moto.aws(&["receive", &queue, "1"]).await;
    assert_eq!(distinct_commands(&bodies), [small.message_id.to_string()]);

    // The emulator goes away: every command fails, and retrying can help.
    moto.stop();
    let batch: Vec<OutboxMessage> = (0..3).map(|i| command(i, json!("w"))).collect();
    let PublishError { failed } = publisher.publish(&batch).await.unwrap_err();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|(_, e)| !e.permanent), "{failed:?}");
    // It is back (empty: moto keeps nothing); the same commands go through.
    let moto = Moto::start(&venv, port).await;
    let queue = moto.aws(&["setup", "sagas", "commands"]).await[0].clone();
    publisher
        .publish(&batch)
        .await
        .expect("published after the outage");
    let bodies = moto.aws(&["receive", &queue, "3"]).await;
    assert_eq!(distinct_commands(&bodies).len(), 3);
}

/// The ids of the commands in EventBridge events read from SQS, each once
/// (delivery is at least once), sorted.
fn distinct_commands(bodies: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = bodies
        .iter()
        .map(|b| {
            let envelope: Value = serde_json::from_str(b).unwrap();
            envelope["detail"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[actix_web::test]
async fn a_participant_routed_to_eventbridge_gets_its_commands_there() {
    let Some(venv) = venv() else {
        assert!(std::env::var_os("SAGAPLANE_REQUIRE_MOTO").is_none());
        eprintln!("SKIPPED: moto_server not found");
        return;
    };
    let port = free_port();
    let moto = Moto::start(&venv, port).await;
    let queue = moto.aws(&["setup", "sagas", "commands"]).await[0].clone();
    let app = crate::helpers::spawn_app_with(|s| {
        s.transports.eventbridge = Some(moto_settings(port));
        s.routing.insert("inventory".into(), "eventbridge".into());
    })
    .await;
    let id = app
        .start_order("eb-1", crate::helpers::order("o-1", "c-1", "SKU-1", 500))
        .await;
    // Inventory is on AWS: its command is on the bus (and so in the queue)…
    let bodies = moto.aws(&["receive", &queue, "1"]).await;
    assert!(
        !bodies.is_empty(),
        "the reserve command reached EventBridge"
    );
    // Delivery is at least once: any other body is the same command again.
    assert_eq!(distinct_commands(&bodies).len(), 1);
    let command: Value = serde_json::from_str(&bodies[0]).unwrap();
    let event = &command["detail"];
    assert_eq!(event["subject"], id.as_str());
    assert_eq!(event["type"], "order.inventory.reserve.v1");
    assert_eq!(app.saga(&id).await["current_step"], "reserve-inventory");
    // …and its reply (here handed straight to the orchestrator, as an ingress
    // would) moves the saga on to the in-process payment and order services.
    let cmd: sagaplane_orchestrator::codec::CloudEvent =
        serde_json::from_value(event.clone()).unwrap();
    let reply = sagaplane_sagas::Reply {
        step: "reserve-inventory".into(),
        attempt: 1,
        outcome: sagaplane_sagas::Outcome::Succeeded,
        at: Utc::now(),
        result: None,
    };
    let answer =
        sagaplane_orchestrator::codec::reply_event(&cmd, "r-eb-1".into(), "inventory", &reply);
    app.orchestrator
        .receive_raw(
            "eventbridge",
            serde_json::to_vec(&answer).unwrap(),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], "completed");
    assert!(app.all_marked_sent().await);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM commands WHERE participant = 'inventory' AND sent_at IS NOT NULL"
        )
        .await,
        1
    );
}

#[actix_web::test]
async fn routing_to_a_transport_that_is_not_configured_stops_the_start() {
    let mut settings = sagaplane_api::Settings {
        listen: "127.0.0.1:0".into(),
        ..sagaplane_api::Settings::default()
    };
    settings.database.url = Some(crate::helpers::fresh_database_url());
    settings
        .routing
        .insert("payment".into(), "eventbridge".into());
    let err = sagaplane_api::Application::build(settings)
        .await
        .err()
        .expect("the start is refused");
    let message = err.to_string();
    assert!(message.contains("`payment` to `eventbridge`"), "{message}");
    assert!(message.contains("configured: in-process"), "{message}");
}
