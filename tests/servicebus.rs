//! Azure participants over Service Bus: commands sent and replies received by
//! the real `azure_messaging_servicebus` clients, against the project's
//! Service Bus stand-in on 127.0.0.1 — peek-lock, completion after commit,
//! abandonment, lock renewal, the broker's dead-letter subqueue, outages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_messaging_servicebus::service_bus::{QueueClient, SendMessageOptions};
use chrono::Utc;
use sagaplane_adapters::{ServiceBusReceiverSettings, ServiceBusSettings, ServiceBusTransport};
use sagaplane_orchestrator::codec::{self, CloudEvent};
use sagaplane_orchestrator::ports::{OutboxMessage, Transport};
use sagaplane_sagas::{Outcome, Reply, SagaId};
use sagaplane_servicebus_fake::{Config, FakeServiceBus, Policy};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{all_marked_sent, order, spawn_app_with, until, TestApp};

pub const KEY: &str = "b3JkZXJzLW5hbWVzcGFjZS10ZXN0LWtleQ==";
pub const COMMANDS: &str = "payment-commands";
pub const REPLIES: &str = "sagaplane-replies";

/// The namespace `orders` with the payment service's queue and the replies
/// queue; messages up to 1 MiB (the premium tier takes more than 256 KiB).
pub fn namespace(lock: Duration, max_deliveries: u32) -> FakeServiceBus {
    FakeServiceBus::start(
        Config::new("orders")
            .policy(Policy::new("sagaplane", KEY))
            .queue(COMMANDS)
            .queue("sagaplane-commands")
            .queue(REPLIES)
            .lock_duration(lock)
            .max_delivery_count(max_deliveries)
            .max_message_bytes(1024 * 1024),
    )
}

pub fn connection(fake: &FakeServiceBus) -> ServiceBusSettings {
    ServiceBusSettings {
        entities: [("payment".to_owned(), COMMANDS.to_owned())].into(),
        ..crate::servicebus_fake::settings(fake, "sagaplane", KEY)
    }
}

pub fn receiver() -> ServiceBusReceiverSettings {
    ServiceBusReceiverSettings {
        entity: REPLIES.into(),
        wait_ms: 1_000,
        renew_lock_every_ms: 300,
        ..ServiceBusReceiverSettings::default()
    }
}

/// The app with payment on Azure: its commands to `payment-commands`, its
/// replies taken from `sagaplane-replies`.
async fn app(fake: &FakeServiceBus) -> TestApp {
    let connection = connection(fake);
    spawn_app_with(move |s| {
        s.transports.servicebus = Some(connection);
        s.routing.insert("payment".into(), "servicebus".into());
        s.ingress.servicebus = Some(receiver());
    })
    .await
}

fn queue(fake: &FakeServiceBus, name: &str) -> QueueClient {
    connection(fake).queue_client(name).unwrap()
}

/// The reply a participant sends to `command`.
pub fn reply_to(command: &CloudEvent, outcome: Outcome, source: &str) -> CloudEvent {
    let reply = Reply {
        step: command.sagastep.clone().expect("sagastep"),
        attempt: command.sagaattempt.expect("sagaattempt"),
        outcome,
        at: Utc::now(),
        result: None,
    };
    // One reply id per command: a command delivered twice is answered alike.
    codec::reply_event(command, format!("reply-to-{}", command.id), source, &reply)
}

async fn send_reply(replies: &QueueClient, event: &CloudEvent) {
    let body = serde_json::to_string(event).unwrap();
    let options = SendMessageOptions {
        content_type: Some(codec::CONTENT_TYPE.into()),
        ..SendMessageOptions::default()
    };
    replies.send_message(&body, Some(options)).await.unwrap();
}

/// The payment service on Azure: takes its commands from `payment-commands`
/// in peek-lock mode, applies each idempotency key once, declines charges
/// above `decline_above` cents, answers on `sagaplane-replies`, completes.
pub struct AzurePayment {
    task: tokio::task::JoinHandle<()>,
    /// Idempotency key → deliveries of its command.
    pub deliveries: Arc<Mutex<HashMap<String, u32>>>,
}

impl AzurePayment {
    pub fn spawn(fake: &FakeServiceBus, decline_above: i64) -> Self {
        let commands = queue(fake, COMMANDS);
        let replies = queue(fake, REPLIES);
        let deliveries = Arc::new(Mutex::new(HashMap::new()));
        let seen = deliveries.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok(m) = commands
                    .peek_lock_message2(Some(Duration::from_secs(1)))
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if u16::from(*m.status()) != 201 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let command: CloudEvent = serde_json::from_str(&m.body()).unwrap();
                let key = command.idempotencykey.clone().unwrap();
                *seen.lock().unwrap().entry(key).or_insert(0) += 1;
                let amount = command.data["amount_cents"].as_i64().unwrap_or(0);
                let outcome =
                    if command.event_type == "order.payment.charge.v1" && amount > decline_above {
                        Outcome::Refused {
                            reason: "card declined".into(),
                        }
                    } else {
                        Outcome::Succeeded
                    };
                let answer = reply_to(&command, outcome, "payment-service");
                let body = serde_json::to_string(&answer).unwrap();
                while replies.send_message(&body, None).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = m.delete_message().await;
            }
        });
        Self { task, deliveries }
    }

    /// Commands applied (distinct idempotency keys).
    pub fn applied(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }
}

impl Drop for AzurePayment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The command waiting on the payment queue for `saga`.
async fn waiting_command(app: &TestApp, fake: &FakeServiceBus, saga: &str) -> CloudEvent {
    let found = app
        .eventually(Duration::from_secs(10), || async {
            fake.active(COMMANDS)
                .iter()
                .any(|m| m.correlation_id.as_deref() == Some(saga))
        })
        .await;
    assert!(
        found,
        "the charge command of {saga} reached the payment queue"
    );
    let m = fake
        .active(COMMANDS)
        .into_iter()
        .find(|m| m.correlation_id.as_deref() == Some(saga))
        .unwrap();
    serde_json::from_slice(&m.body).unwrap()
}

fn command(participant: &str, data: Value) -> OutboxMessage {
    let saga = SagaId::from_uuid(Uuid::now_v7());
    OutboxMessage {
        message_id: Uuid::now_v7(),
        saga_id: saga,
        saga_type: "order".into(),
        step: "charge-payment".into(),
        attempt: 1,
        participant: participant.into(),
        command_type: "order.payment.charge.v1".into(),
        idempotency_key: format!("{saga}:charge-payment"),
        data,
        created_at: Utc::now(),
        traceparent: None,
        publish_attempts: 0,
    }
}

#[tokio::test]
async fn commands_reach_their_participants_queue_and_broker_failures_are_told_apart() {
    let mut fake = namespace(Duration::from_secs(30), 10);
    let transport = ServiceBusTransport::new(connection(&fake)).unwrap();
    let batch: Vec<OutboxMessage> = (0..3)
        .map(|i| command("payment", json!({ "n": i })))
        .chain([command("order", json!({ "n": 3 }))])
        .collect();
    transport.publish(&batch).await.expect("all sent");
    // Payment's to its queue; the others to the default entity.
    let sent = fake.active(COMMANDS);
    assert_eq!(sent.len(), 3);
    for c in &batch[..3] {
        let m = sent
            .iter()
            .find(|m| m.message_id == c.message_id.to_string())
            .expect("each command sent");
        let event: CloudEvent = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(event.id, c.message_id.to_string());
        assert_eq!(
            event.subject.as_deref(),
            Some(c.saga_id.to_string().as_str())
        );
        assert_eq!(event.event_type, "order.payment.charge.v1");
        assert_eq!(event.data, c.data);
        assert_eq!(m.label.as_deref(), Some("order.payment.charge.v1"));
        assert_eq!(m.correlation_id, Some(c.saga_id.to_string()));
        assert_eq!(m.content_type.as_deref(), Some(codec::CONTENT_TYPE));
    }
    assert_eq!(fake.active("sagaplane-commands").len(), 1);

    // The broker answering 500, or gone: every command failed, transiently.
    for outage in ["500", "down"] {
        if outage == "500" {
            fake.fail_with(Some(500));
        } else {
            fake.stop().await;
        }
        let e = transport.publish(&batch[..2]).await.expect_err(outage);
        assert_eq!(e.failed.len(), 2, "{outage}");
        assert!(
            e.failed.iter().all(|(_, e)| !e.permanent),
            "{outage}: {e:?}"
        );
        if outage == "500" {
            assert!(e.failed[0].1.reason.contains("500"), "{:?}", e.failed[0]);
            fake.fail_with(None);
        } else {
            fake.restart();
        }
    }
    transport
        .publish(&batch[..2])
        .await
        .expect("sent once back");
    assert_eq!(fake.active(COMMANDS).len(), 5);

    // Too large for the broker: refused for good, the rest still sent.
    let big = command("payment", json!({ "blob": "x".repeat(1024 * 1024) }));
    let small = command("payment", json!({}));
    let e = transport
        .publish(&[big.clone(), small])
        .await
        .expect_err("the large one fails");
    assert_eq!(e.failed.len(), 1);
    assert_eq!(e.failed[0].0, big.message_id);
    assert!(e.failed[0].1.permanent, "{:?}", e.failed[0]);
    assert_eq!(fake.active(COMMANDS).len(), 6);
}

#[tokio::test]
async fn each_sagas_commands_keep_their_order_while_sagas_go_concurrently() {
    // A slow namespace: 20 ms an answer.
    let fake = FakeServiceBus::start(
        Config::new("orders")
            .policy(Policy::new("sagaplane", KEY))
            .queue(COMMANDS)
            .queue("sagaplane-commands")
            .latency(Duration::from_millis(20)),
    );
    let transport = ServiceBusTransport::new(connection(&fake)).unwrap();
    // Four commands each of ten sagas, interleaved as commits would be.
    let sagas: Vec<OutboxMessage> = (0..10)
        .map(|i| command("payment", json!({ "saga": i })))
        .collect();
    let mut batch = Vec::new();
    for n in 0..4 {
        for s in &sagas {
            batch.push(OutboxMessage {
                message_id: Uuid::now_v7(),
                attempt: n + 1,
                ..s.clone()
            });
        }
    }
    transport.publish(&batch).await.expect("all sent");
    let sent = fake.active(COMMANDS);
    assert_eq!(sent.len(), 40);
    for s in &sagas {
        let attempts: Vec<u32> = sent
            .iter()
            .filter(|m| m.correlation_id == Some(s.saga_id.to_string()))
            .map(|m| {
                serde_json::from_slice::<CloudEvent>(&m.body)
                    .unwrap()
                    .sagaattempt
                    .unwrap()
            })
            .collect();
        assert_eq!(
            attempts,
            [1, 2, 3, 4],
            "in commit order for saga {}",
            s.saga_id
        );
    }
    // Sagas went side by side: the broker answered several sends at once
    // (one request after another, it would never see two).
    assert!(fake.stats().most_at_once > 1, "{:?}", fake.stats());

    // A saga whose first command fails has its later ones held back.
    fake.fail_with(Some(503));
    let held = vec![
        OutboxMessage {
            message_id: Uuid::now_v7(),
            ..sagas[0].clone()
        },
        OutboxMessage {
            message_id: Uuid::now_v7(),
            ..sagas[0].clone()
        },
    ];
    let e = transport.publish(&held).await.unwrap_err();
    assert_eq!(e.failed.len(), 2);
    assert!(
        e.failed[1].1.reason.contains("earlier command of its saga"),
        "{:?}",
        e.failed[1]
    );
}

#[actix_web::test]
async fn a_saga_whose_payment_is_on_azure_completes_or_compensates_over_service_bus() {
    let fake = namespace(Duration::from_secs(30), 10);
    let app = app(&fake).await;
    let payment = AzurePayment::spawn(&fake, 50_000);
    let paid = app
        .start_order("sb-ok", order("o-1", "c-1", "SKU-1", 10_000))
        .await;
    let declined = app
        .start_order("sb-no", order("o-2", "c-2", "SKU-1", 90_000))
        .await;
    assert_eq!(app.settled(&paid).await["status"], "completed");
    assert_eq!(app.settled(&declined).await["status"], "compensated");
    let history = app.event_types(&declined).await;
    assert!(
        history.contains(&"InventoryReleased".to_owned()),
        "{history:?}"
    );
    assert!(
        !history.contains(&"PaymentCharged".to_owned()),
        "{history:?}"
    );
    assert_eq!(payment.applied(), 2, "one charge each");
    // Both replies came in over Service Bus and were completed after commit.
    let inbox = app
        .count("SELECT count(*) FROM received_messages WHERE message_id LIKE 'reply-to-%'")
        .await;
    assert_eq!(inbox, 2);
    assert_completed(&fake, 2).await;
    assert!(fake.active(REPLIES).is_empty());
}

#[actix_web::test]
async fn a_broker_outage_delays_commands_and_loses_or_doubles_nothing() {
    let mut fake = namespace(Duration::from_secs(30), 10);
    let app = app(&fake).await;
    let payment = AzurePayment::spawn(&fake, 1_000_000);
    let mut ids = Vec::new();
    // First the broker answers 500, then it is gone altogether.
    for (round, outage) in ["500", "down"].into_iter().enumerate() {
        if outage == "500" {
            fake.fail_with(Some(500));
        } else {
            fake.stop().await;
        }
        let started = ids.len();
        for i in 0..6 {
            let key = format!("outage-{round}-{i}");
            ids.push(app.start_order(&key, order(&key, "c", "SKU-1", 100)).await);
        }
        // Meanwhile the charges wait in the outbox, retried.
        let retried = app
            .eventually(Duration::from_secs(10), || async {
                app.count(
                    "SELECT count(*) FROM commands WHERE participant = 'payment' \
                     AND publish_attempts > 0 AND sent_at IS NULL",
                )
                .await
                    == 6
            })
            .await;
        assert!(retried, "{outage}: every charge was tried and failed");
        if outage == "500" {
            fake.fail_with(None);
        } else {
            fake.restart();
        }
        for id in &ids[started..] {
            assert_eq!(
                app.settled(id).await["status"],
                "completed",
                "{outage}: {id}"
            );
        }
    }
    assert_eq!(payment.applied(), 12);
    // The receivers lost the stopped broker too, and said so.
    assert!(
        app.metric("sagaplane_receive_errors_total{channel=\"servicebus\"}")
            .await
            >= 1.0
    );
    let applied_replies = app
        .count(
            "SELECT count(*) FROM received_messages WHERE message_id LIKE 'reply-to-%' AND outcome = 'applied'",
        )
        .await;
    assert_eq!(applied_replies, 12, "one charge reply applied per saga");
    let charged = app
        .count("SELECT count(*) FROM saga_events WHERE event_type = 'PaymentCharged'")
        .await;
    assert_eq!(charged, 12);
    crate::server::assert_histories_whole(&app.pool).await;
}

#[actix_web::test]
async fn unusable_messages_are_dead_lettered_with_their_bytes_and_the_receiver_goes_on() {
    let fake = namespace(Duration::from_millis(500), 2);
    let app = app(&fake).await;
    let id = app
        .start_order("sb-poison", order("o-p", "c-p", "SKU-1", 100))
        .await;
    let command = waiting_command(&app, &fake, &id).await;
    let replies = queue(&fake, REPLIES);

    let mut unknown = reply_to(&command, Outcome::Succeeded, "payment-service");
    unknown.id = "reply-for-no-saga".into();
    unknown.subject = Some(SagaId::from_uuid(Uuid::now_v7()).to_string());
    let mut oversized = reply_to(&command, Outcome::Succeeded, "payment-service");
    oversized.id = "reply-too-large".into();
    oversized.data["padding"] = json!("x".repeat(300 * 1024));
    let poison: Vec<(String, &str)> = vec![
        ("this is not JSON".into(), "not JSON"),
        (r#"{"hello":"world"}"#.into(), "CloudEvent"),
        (serde_json::to_string(&unknown).unwrap(), "no saga"),
        (
            serde_json::to_string(&oversized).unwrap(),
            "more than the 262144 allowed",
        ),
    ];
    for (body, _) in &poison {
        replies.send_message(body, None).await.unwrap();
    }
    // Bytes no UTF-8 string holds: the client cannot read them, so the lock
    // lapses until the broker dead-letters the message.
    fake.enqueue(REPLIES, vec![0xff, 0xfe, 0x00, 0x80]);
    // A good reply after all that, twice: applied once.
    let good = reply_to(&command, Outcome::Succeeded, "payment-service");
    send_reply(&replies, &good).await;
    send_reply(&replies, &good).await;

    assert_eq!(app.settled(&id).await["status"], "completed");
    let done = app
        .eventually(Duration::from_secs(10), || async {
            fake.active(REPLIES).is_empty() && fake.dead_lettered(REPLIES).len() == 1
        })
        .await;
    assert!(done, "every reply settled: {:?}", fake.active(REPLIES));
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT channel, reason, raw FROM dead_letters ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        rows.len(),
        4,
        "{:?}",
        rows.iter().map(|r| &r.1).collect::<Vec<_>>()
    );
    // Receivers work concurrently: the rows come in any order.
    for (body, why) in &poison {
        let (channel, reason, _) = rows
            .iter()
            .find(|(_, _, raw)| raw == body.as_bytes())
            .unwrap_or_else(|| panic!("a dead letter holds the bytes that were {why}"));
        assert_eq!(channel, "servicebus");
        assert!(reason.contains(why), "{reason} should say {why}");
    }
    // The poison was completed (ours to keep now), the good reply twice.
    assert_completed(&fake, 6).await;
    let dead = &fake.dead_lettered(REPLIES)[0];
    assert_eq!(dead.body, [0xff, 0xfe, 0x00, 0x80]);
    assert_eq!(
        dead.dead_letter_reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
    let applied = app
        .count("SELECT count(*) FROM saga_events WHERE event_type = 'PaymentCharged'")
        .await;
    assert_eq!(applied, 1);
}

#[actix_web::test]
async fn a_reply_that_cannot_be_applied_now_is_abandoned_then_dead_lettered_by_the_broker() {
    let fake = namespace(Duration::from_secs(30), 3);
    let app = app(&fake).await;
    let first = app
        .start_order("sb-a", order("o-a", "c", "SKU-1", 100))
        .await;
    let second = app
        .start_order("sb-b", order("o-b", "c", "SKU-1", 100))
        .await;
    let first_command = waiting_command(&app, &fake, &first).await;
    let second_command = waiting_command(&app, &fake, &second).await;
    // Every reply's event is refused for now: no reply can be applied.
    sqlx::query("ALTER TABLE saga_events ADD CONSTRAINT refuse_for_now CHECK (message_id IS NULL) NOT VALID")
        .execute(&app.pool)
        .await
        .unwrap();
    let replies = queue(&fake, REPLIES);
    send_reply(
        &replies,
        &reply_to(&first_command, Outcome::Succeeded, "payment-service"),
    )
    .await;
    let dead = app
        .eventually(Duration::from_secs(15), || async {
            fake.dead_lettered(REPLIES).len() == 1
        })
        .await;
    assert!(dead, "abandoned until MaxDeliveryCount: {:?}", fake.stats());
    assert_eq!(fake.stats().abandoned, 3);
    assert_eq!(app.saga(&first).await["current_step"], "charge-payment");
    assert_eq!(
        app.metric("sagaplane_inbound_abandoned_total{channel=\"servicebus\"}")
            .await,
        3.0
    );

    // The second reply is abandoned once, then applied once the store takes it.
    send_reply(
        &replies,
        &reply_to(&second_command, Outcome::Succeeded, "payment-service"),
    )
    .await;
    let abandoned = app
        .eventually(Duration::from_secs(10), || async {
            fake.stats().abandoned >= 4
        })
        .await;
    assert!(abandoned);
    sqlx::query("ALTER TABLE saga_events DROP CONSTRAINT refuse_for_now")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.settled(&second).await["status"], "completed");
    assert_completed(&fake, 1).await;
    let completed = fake.completed(REPLIES);
    assert!(completed[0].delivery_count >= 2, "{completed:?}");
    assert_eq!(app.saga(&first).await["current_step"], "charge-payment");
}

#[actix_web::test]
async fn the_lock_is_renewed_while_a_step_is_slow() {
    let fake = namespace(Duration::from_secs(1), 10);
    let app = app(&fake).await;
    let id = app
        .start_order("sb-slow", order("o-s", "c", "SKU-1", 100))
        .await;
    let command = waiting_command(&app, &fake, &id).await;
    // Another transaction holds the saga's row: the step waits for it.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM sagas WHERE id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    send_reply(
        &queue(&fake, REPLIES),
        &reply_to(&command, Outcome::Succeeded, "payment-service"),
    )
    .await;
    let locked = app
        .eventually(Duration::from_secs(5), || async {
            fake.stats().locked >= 1
        })
        .await;
    assert!(locked);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    blocker.rollback().await.unwrap();
    assert_eq!(app.settled(&id).await["status"], "completed");
    let done = app
        .eventually(Duration::from_secs(5), || async {
            fake.completed(REPLIES).len() == 1
        })
        .await;
    assert!(done);
    let stats = fake.stats();
    assert!(stats.renewed >= 3, "{stats:?}");
    assert_eq!(stats.locks_expired, 0, "{stats:?}");
    assert_eq!(fake.completed(REPLIES)[0].delivery_count, 1);
}

/// The environment that routes payment to Service Bus in a `sagaplane serve`.
fn server_env(fake: &FakeServiceBus) -> Vec<(String, String)> {
    [
        ("SAGAPLANE_ROUTING__PAYMENT", "servicebus".to_owned()),
        (
            "SAGAPLANE_TRANSPORTS__SERVICEBUS__NAMESPACE",
            fake.namespace().to_owned(),
        ),
        (
            "SAGAPLANE_TRANSPORTS__SERVICEBUS__POLICY",
            "sagaplane".to_owned(),
        ),
        ("SAGAPLANE_TRANSPORTS__SERVICEBUS__KEY", KEY.to_owned()),
        (
            "SAGAPLANE_TRANSPORTS__SERVICEBUS__ENDPOINT",
            fake.endpoint(),
        ),
        (
            "SAGAPLANE_TRANSPORTS__SERVICEBUS__ENTITIES__PAYMENT",
            COMMANDS.to_owned(),
        ),
        ("SAGAPLANE_INGRESS__SERVICEBUS__ENTITY", REPLIES.to_owned()),
        ("SAGAPLANE_INGRESS__SERVICEBUS__WAIT_MS", "1000".to_owned()),
        (
            "SAGAPLANE_INGRESS__SERVICEBUS__RENEW_LOCK_EVERY_MS",
            "500".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test]
async fn killed_between_commit_and_complete_the_redelivered_reply_is_recognised() {
    use crate::server::{assert_histories_whole, Server};
    let fake = namespace(Duration::from_secs(2), 10);
    let env = server_env(&fake);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let database_url = crate::helpers::fresh_database_url();
    let server = Server::start(&database_url, &env).await;
    let _payment = AzurePayment::spawn(&fake, 1_000_000);
    // The reply's step will commit; its completion will not.
    fake.fail_completes(REPLIES, Some(503));
    let id = server
        .start_order("sb-crash", order("o-c", "c", "SKU-1", 100))
        .await;
    let mut committed = false;
    for _ in 0..500 {
        let saga = server.get(&format!("/v1/sagas/{id}")).await;
        if saga["status"] == "completed" && fake.stats().failed >= 1 {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        committed,
        "the reply was applied and its completion refused"
    );
    // Every command marked sent first: one published in the last moments
    // and not yet marked would be published again after the restart, and
    // its second reply would be a message of its own.
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    assert!(all_marked_sent(&pool).await);
    // The process dies with the reply committed and its message still locked.
    let port = server.port;
    server.kill();
    fake.fail_completes(REPLIES, None);
    assert!(fake.completed(REPLIES).is_empty());
    assert_eq!(fake.active(REPLIES).len(), 1);

    let server = Server::start_on(port, &database_url, &env).await;
    // The lock lapses, the broker delivers the reply again, the inbox knows it.
    assert!(
        until(Duration::from_secs(10), || fake.completed(REPLIES).len()
            == 1)
        .await,
        "redelivered and completed: {:?}",
        fake.stats()
    );
    let reply = &fake.completed(REPLIES)[0];
    assert!(reply.delivery_count >= 2, "{reply:?}");
    let (saga, events) = server.snapshot(&id).await;
    assert_eq!(saga["status"], "completed");
    let charged = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "PaymentCharged")
        .count();
    assert_eq!(charged, 1, "{events}");
    let inbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM received_messages WHERE message_id LIKE 'reply-to-%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(inbox, 1);
    assert_histories_whole(&pool).await;
}

#[actix_web::test]
async fn a_receiver_without_a_namespace_or_a_bad_endpoint_stops_the_start() {
    let base = || {
        let mut s = sagaplane_api::Settings {
            listen: "127.0.0.1:0".into(),
            ..sagaplane_api::Settings::default()
        };
        s.database.url = Some(crate::helpers::fresh_database_url());
        s
    };
    let refused = |s| async move {
        sagaplane_api::Application::build(s)
            .await
            .err()
            .expect("the start is refused")
            .to_string()
    };
    let mut s = base();
    s.ingress.servicebus = Some(receiver());
    let message = refused(s).await;
    assert!(
        message.contains("[ingress.servicebus] needs [transports.servicebus]"),
        "{message}"
    );

    let mut s = base();
    s.transports.servicebus = Some(ServiceBusSettings {
        namespace: "orders".into(),
        key: KEY.into(),
        endpoint: "not a url".into(),
        ..ServiceBusSettings::default()
    });
    let message = refused(s).await;
    assert!(
        message.contains("transports.servicebus.endpoint `not a url`"),
        "{message}"
    );

    let mut s = base();
    s.routing.insert("payment".into(), "servicebus".into());
    let message = refused(s).await;
    assert!(message.contains("`payment` to `servicebus`"), "{message}");
}

#[actix_web::test]
async fn a_command_type_can_be_routed_apart_from_its_participant() {
    let fake = namespace(Duration::from_secs(30), 10);
    let mut connection = connection(&fake);
    connection.entities = [("order.payment.charge.v1".to_owned(), COMMANDS.to_owned())].into();
    let app = spawn_app_with(move |s| {
        s.transports.servicebus = Some(connection);
        // Charges go to Azure; the rest of payment (refunds) stays in-process.
        s.routing
            .insert("order.payment.charge.v1".into(), "servicebus".into());
        s.routing.insert("payment".into(), "in-process".into());
        s.ingress.servicebus = Some(receiver());
    })
    .await;
    let _payment = AzurePayment::spawn(&fake, 1_000_000);
    // The order service refuses the confirmation: the charge is refunded.
    let id = app
        .start_order("by-type", order("NOCONFIRM-1", "c", "SKU-1", 100))
        .await;
    assert_eq!(app.settled(&id).await["status"], "compensated");
    let history = app.event_types(&id).await;
    assert!(
        history.contains(&"PaymentCharged".to_owned()),
        "{history:?}"
    );
    assert!(
        history.contains(&"PaymentRefunded".to_owned()),
        "{history:?}"
    );
    // The charge went through Service Bus, the refund did not.
    assert!(
        until(Duration::from_secs(5), || !fake
            .completed(COMMANDS)
            .is_empty())
        .await
    );
    let labels: Vec<Option<String>> = fake
        .completed(COMMANDS)
        .into_iter()
        .map(|m| m.label)
        .collect();
    assert_eq!(labels, [Some("order.payment.charge.v1".to_owned())]);
    assert!(fake.active("sagaplane-commands").is_empty());
}

#[actix_web::test]
async fn replies_can_come_from_a_topic_subscription() {
    let fake = FakeServiceBus::start(
        Config::new("orders")
            .policy(Policy::new("sagaplane", KEY))
            .queue(COMMANDS)
            .queue("sagaplane-commands")
            .topic("payment-events", &["sagaplane", "audit"]),
    );
    let connection = connection(&fake);
    let app = spawn_app_with(move |s| {
        s.transports.servicebus = Some(connection);
        s.routing.insert("payment".into(), "servicebus".into());
        s.ingress.servicebus = Some(ServiceBusReceiverSettings {
            entity: "payment-events".into(),
            subscription: "sagaplane".into(),
            ..receiver()
        });
    })
    .await;
    let id = app
        .start_order("topic", order("o-t", "c", "SKU-1", 100))
        .await;
    let command = waiting_command(&app, &fake, &id).await;
    let topic = self::connection(&fake)
        .topic_client("payment-events")
        .unwrap();
    let reply = reply_to(&command, Outcome::Succeeded, "payment-service");
    topic
        .topic_sender()
        .send_message(&serde_json::to_string(&reply).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], "completed");
    assert!(
        until(Duration::from_secs(5), || fake
            .completed("payment-events/subscriptions/sagaplane")
            .len()
            == 1)
        .await
    );
    // The other subscription's copy is not ours to take.
    assert_eq!(fake.active("payment-events/subscriptions/audit").len(), 1);
}

#[actix_web::test]
async fn a_routing_key_that_names_nothing_stops_the_start() {
    for (table, configure) in [
        (
            "[routing] names `paymnet`",
            Box::new(|s: &mut sagaplane_api::Settings| {
                s.routing.insert("paymnet".into(), "in-process".into());
            }) as Box<dyn Fn(&mut sagaplane_api::Settings)>,
        ),
        (
            "[transports.servicebus.entities] names `order.payment.charge.v2`",
            Box::new(|s: &mut sagaplane_api::Settings| {
                s.transports.servicebus = Some(ServiceBusSettings {
                    namespace: "orders".into(),
                    key: KEY.into(),
                    entities: [("order.payment.charge.v2".to_owned(), "q".to_owned())].into(),
                    ..ServiceBusSettings::default()
                });
            }),
        ),
    ] {
        let mut settings = sagaplane_api::Settings {
            listen: "127.0.0.1:0".into(),
            ..sagaplane_api::Settings::default()
        };
        settings.database.url = Some(crate::helpers::fresh_database_url());
        configure(&mut settings);
        let message = sagaplane_api::Application::build(settings)
            .await
            .err()
            .expect("the start is refused")
            .to_string();
        assert!(message.contains(table), "{message}");
        assert!(message.contains("known: inventory, order,"), "{message}");
        assert!(message.contains("order.payment.charge.v1"), "{message}");
    }
}

#[actix_web::test]
async fn with_the_simulator_off_every_command_must_be_routed() {
    let mut settings = sagaplane_api::Settings {
        listen: "127.0.0.1:0".into(),
        ..sagaplane_api::Settings::default()
    };
    settings.database.url = Some(crate::helpers::fresh_database_url());
    settings.simulator.enabled = false;
    settings
        .routing
        .insert("payment".into(), "in-process".into());
    let message = sagaplane_api::Application::build(settings.clone())
        .await
        .err()
        .expect("in-process is gone")
        .to_string();
    assert!(message.contains("`payment` to `in-process`"), "{message}");
    settings.routing.clear();
    let message = sagaplane_api::Application::build(settings)
        .await
        .err()
        .expect("nothing is routed")
        .to_string();
    assert!(
        message.contains("sends these commands nowhere"),
        "{message}"
    );
    assert!(message.contains("order.inventory.reserve.v1"), "{message}");

    // Everything to Service Bus: the first command goes there, no simulator answers.
    let fake = namespace(Duration::from_secs(30), 10);
    let connection = connection(&fake);
    let app = spawn_app_with(move |s| {
        s.simulator.enabled = false;
        s.transports.servicebus = Some(connection);
        for participant in ["inventory", "payment", "order", "returns"] {
            s.routing.insert(participant.into(), "servicebus".into());
        }
    })
    .await;
    let id = app
        .start_order("all-azure", order("o-z", "c", "SKU-1", 100))
        .await;
    assert!(
        until(Duration::from_secs(5), || fake
            .active("sagaplane-commands")
            .len()
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let saga = app.saga(&id).await;
    assert_eq!(saga["current_step"], "reserve-inventory", "{saga}");
    assert_eq!(saga["version"], 1, "nothing answered: {saga}");
}

/// Waits (up to 10 s) until `n` replies are completed at the broker: a handled
/// reply is completed by a task of its own after its step commits, beside the
/// saga's next steps, so perhaps after the saga has settled.
async fn assert_completed(fake: &FakeServiceBus, n: usize) {
    assert!(
        until(Duration::from_secs(10), || fake.completed(REPLIES).len()
            == n)
        .await,
        "{n} replies completed: {:?}",
        fake.stats()
    );
}
