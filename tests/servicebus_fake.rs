//! The Service Bus stand-in, driven by the real `azure_messaging_servicebus`
//! clients (their requests only redirected to 127.0.0.1): what the service
//! does, it does — so the orchestrator's tests against it mean something.

use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_messaging_servicebus::service_bus::{
    QueueClient, SendMessageOptions, SettableBrokerProperties,
};
use sagaplane_adapters::ServiceBusSettings;
use sagaplane_servicebus_fake::{Config, FakeServiceBus, Policy};

const KEY: &str = "c2FnYXBsYW5lLXRlc3Qta2V5LW5vdC1hLXNlY3JldA==";

pub fn settings(fake: &FakeServiceBus, policy: &str, key: &str) -> ServiceBusSettings {
    ServiceBusSettings {
        namespace: fake.namespace().into(),
        policy: policy.into(),
        key: key.into(),
        endpoint: fake.endpoint(),
        ..ServiceBusSettings::default()
    }
}

fn queue(fake: &FakeServiceBus, name: &str) -> QueueClient {
    settings(fake, "app", KEY).queue_client(name).unwrap()
}

fn status_of(e: &azure_core::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

fn with_id(id: &str) -> Option<SendMessageOptions> {
    Some(SendMessageOptions {
        content_type: Some("application/json".into()),
        broker_properties: Some(SettableBrokerProperties {
            message_id: Some(id.into()),
            label: Some("label-1".into()),
            ..SettableBrokerProperties::default()
        }),
        custom_properties: None,
    })
}

fn fake(lock: Duration, max_deliveries: u32) -> FakeServiceBus {
    FakeServiceBus::start(
        Config::new("acme")
            .policy(Policy::new("app", KEY))
            .policy(Policy {
                send: true,
                listen: false,
                ..Policy::new("send-only", "another-key")
            })
            .queue("work")
            .topic("events", &["a", "b"])
            .lock_duration(lock)
            .max_delivery_count(max_deliveries),
    )
}

#[tokio::test]
async fn peek_lock_complete_abandon_expiry_and_renewal_behave_as_the_service_does() {
    let fake = fake(Duration::from_millis(600), 10);
    let work = queue(&fake, "work");
    work.send_message("first", with_id("m-1")).await.unwrap();
    work.send_message("second", with_id("m-2")).await.unwrap();

    // Peek-lock: 201, the body, BrokerProperties and a lock URL.
    let one = work
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(u16::from(*one.status()), 201);
    assert_eq!(one.body(), "first");
    let p = one.broker_properties().expect("BrokerProperties parse");
    assert_eq!((p.message_id.as_str(), p.delivery_count), ("m-1", 1));
    assert!(p.enqueued_time_utc.is_some());
    let first_seq = p.sequence_number;

    // Abandon: delivered again, counted.
    one.unlock_message().await.unwrap();
    let again = work
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let p = again.broker_properties().unwrap();
    assert_eq!((p.sequence_number, p.delivery_count), (first_seq, 2));

    // A lapsed lock: the message comes back; the old lock is gone (404).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let third = work
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(third.broker_properties().unwrap().delivery_count, 3);
    let lost = again.delete_message().await.expect_err("the lock lapsed");
    assert_eq!(status_of(&lost), Some(404));

    // Renewal keeps a lock past its duration.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        third.renew_message_lock().await.unwrap();
    }
    third
        .delete_message()
        .await
        .expect("still held after renewals");
    assert_eq!(fake.completed("work").len(), 1);

    // The second message, then an empty queue: 204 after the wait.
    let second = work
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(second.body(), "second");
    second.delete_message().await.unwrap();
    let none = work
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(u16::from(*none.status()), 204);
    assert!(fake.active("work").is_empty());

    // Receive-and-delete takes it at once.
    work.send_message("third", None).await.unwrap();
    assert_eq!(work.receive_and_delete_message().await.unwrap(), "third");
    let stats = fake.stats();
    assert_eq!((stats.sent, stats.completed, stats.abandoned), (3, 2, 1));
    assert_eq!(
        (stats.locks_expired, stats.renewed, stats.lost_locks),
        (1, 3, 1)
    );
}

#[tokio::test]
async fn a_message_delivered_max_delivery_count_times_goes_to_the_dead_letter_subqueue() {
    let fake = fake(Duration::from_secs(30), 3);
    let work = queue(&fake, "work");
    work.send_message("poison", with_id("p-1")).await.unwrap();
    for n in 1..=3 {
        let m = work
            .peek_lock_message2(Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(m.broker_properties().unwrap().delivery_count, n);
        m.unlock_message().await.unwrap();
    }
    assert!(fake.active("work").is_empty());
    // The subqueue is an entity of its own, read with the same client.
    let dlq = queue(&fake, "work/$DeadLetterQueue");
    let dead = dlq
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(dead.body(), "poison");
    assert_eq!(dead.broker_properties().unwrap().message_id, "p-1");
    assert_eq!(
        fake.dead_lettered("work")[0].dead_letter_reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
}

#[tokio::test]
async fn signatures_rights_entities_and_sizes_are_checked() {
    let fake = fake(Duration::from_secs(30), 10);
    // A wrong key, an unknown policy: 401, nothing stored.
    let wrong = settings(&fake, "app", "not-the-key")
        .queue_client("work")
        .unwrap();
    let e = wrong.send_message("x", None).await.unwrap_err();
    assert_eq!(status_of(&e), Some(401));
    let unknown = settings(&fake, "nobody", KEY).queue_client("work").unwrap();
    assert_eq!(
        status_of(&unknown.send_message("x", None).await.unwrap_err()),
        Some(401)
    );
    // A policy without Listen may send but not receive.
    let sender = settings(&fake, "send-only", "another-key")
        .queue_client("work")
        .unwrap();
    sender.send_message("from the sender", None).await.unwrap();
    let refused = sender
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(u16::from(*refused.status()), 401);
    assert_eq!(fake.stats().unauthorized, 3);
    assert_eq!(fake.active("work").len(), 1);
    // No such queue: 410. Too large: 413.
    let missing = queue(&fake, "nope");
    assert_eq!(
        status_of(&missing.send_message("x", None).await.unwrap_err()),
        Some(410)
    );
    let big = "x".repeat(256 * 1024 + 1);
    let work = queue(&fake, "work");
    assert_eq!(
        status_of(&work.send_message(&big, None).await.unwrap_err()),
        Some(413)
    );
    // An injected failure answers every request until lifted.
    fake.fail_with(Some(500));
    assert_eq!(
        status_of(&work.send_message("y", None).await.unwrap_err()),
        Some(500)
    );
    fake.fail_with(None);
    work.send_message("y", None).await.unwrap();
    assert_eq!(fake.active("work").len(), 2);
}

#[tokio::test]
async fn a_topic_gives_every_subscription_its_own_copy() {
    let fake = fake(Duration::from_secs(30), 10);
    let topic = settings(&fake, "app", KEY).topic_client("events").unwrap();
    topic
        .topic_sender()
        .send_message("news", None)
        .await
        .unwrap();
    for name in ["a", "b"] {
        let receiver = topic.subscription_receiver(name);
        let m = receiver
            .peek_lock_message2(Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(m.body(), "news", "subscription {name}");
        m.delete_message().await.unwrap();
    }
    // The topic itself is not receivable.
    let direct = queue(&fake, "events");
    let refused = direct
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(u16::from(*refused.status()), 400);
}

#[tokio::test]
async fn a_stopped_broker_refuses_connections_and_comes_back_with_its_messages() {
    let mut fake = fake(Duration::from_secs(30), 10);
    let work = queue(&fake, "work");
    work.send_message("kept", None).await.unwrap();
    fake.stop().await;
    let e = work.send_message("lost?", None).await.unwrap_err();
    assert_eq!(
        status_of(&e),
        None,
        "a connection error, not an answer: {e}"
    );
    fake.restart();
    let m = work
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(m.body(), "kept");
}
