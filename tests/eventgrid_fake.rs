//! The Event Grid stand-in, driven by sagaplane's Event Grid transport and by
//! plain HTTP as a publisher in another language would: what the service
//! does, it does — so the orchestrator's tests against it mean something.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use sagaplane_adapters::eventgrid::sas_token;
use sagaplane_adapters::{EventGridAuth, EventGridSettings, EventGridTransport};
use sagaplane_eventgrid_fake::{Config, FakeEventGrid, Subscription};
use sagaplane_orchestrator::ports::{OutboxMessage, Transport};
use sagaplane_sagas::SagaId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::until;

pub const KEY: &str = "ZXZlbnRncmlkLXRvcGljLWtleS0x";
const OTHER_KEY: &str = "ZXZlbnRncmlkLXRvcGljLWtleS0y";

/// A request a webhook received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Answers a delivery with a status.
pub type Answer = Arc<dyn Fn(Received) -> LocalBoxFuture<'static, u16> + Send + Sync>;

/// A webhook on 127.0.0.1 that passes the validation handshake when it
/// allows `eventgrid.azure.net`, records every delivery and answers it as
/// `answer` says.
pub struct Webhook {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    handle: ServerHandle,
}

impl Webhook {
    pub fn start(allowed_origin: &'static str, answer: Answer) -> Webhook {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = received.clone();
        let server = HttpServer::new(move || {
            let seen = seen.clone();
            let answer = answer.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let seen = seen.clone();
                let answer = answer.clone();
                async move {
                    if req.method() == actix_web::http::Method::OPTIONS {
                        return HttpResponse::Ok()
                            .insert_header(("WebHook-Allowed-Origin", allowed_origin))
                            .finish();
                    }
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let delivery = Received {
                        headers,
                        body: body.to_vec(),
                    };
                    seen.lock().unwrap().push(delivery.clone());
                    let status = answer(delivery).await;
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Webhook {
            url: format!("http://127.0.0.1:{port}/events"),
            received,
            handle,
        }
    }

    /// A webhook that answers every delivery with `status`.
    pub fn answering(status: u16) -> Webhook {
        Webhook::start(
            "eventgrid.azure.net",
            Arc::new(move |_| Box::pin(async move { status })),
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

pub fn fake() -> FakeEventGrid {
    FakeEventGrid::start(
        Config::new()
            .topic("orders", &[KEY, OTHER_KEY])
            .retry(Duration::from_millis(50), Duration::from_millis(200)),
    )
}

pub fn cloudevent(id: &str, event_type: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test", "type": event_type, "data": {"n": 1}})
}

async fn publish(
    fake: &FakeEventGrid,
    query: &str,
    headers: &[(&str, String)],
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{query}", fake.endpoint("orders")))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";
const V: &str = "?api-version=2018-01-01";

#[actix_web::test]
async fn a_topic_takes_a_key_or_a_signature_of_it_and_refuses_anything_else() {
    let fake = fake();
    let body = || serde_json::to_vec(&json!([cloudevent("e-1", "t")])).unwrap();
    let key = |k: &str| vec![("aeg-sas-key", k.to_owned())];
    assert_eq!(publish(&fake, V, &key(KEY), BATCH, body()).await.0, 200);
    assert_eq!(
        publish(&fake, V, &key(OTHER_KEY), BATCH, body()).await.0,
        200
    );
    let in_query = format!("{V}&aeg-sas-key={}", url(KEY));
    assert_eq!(publish(&fake, &in_query, &[], BATCH, body()).await.0, 200);

    let endpoint = fake.endpoint("orders");
    let later = Utc::now() + chrono::Duration::minutes(10);
    let token = sas_token(&endpoint, later, KEY).unwrap();
    let signed = vec![("aeg-sas-token", token.clone())];
    assert_eq!(publish(&fake, V, &signed, BATCH, body()).await.0, 200);
    let authorization = vec![("authorization", format!("SharedAccessSignature {token}"))];
    assert_eq!(
        publish(&fake, V, &authorization, BATCH, body()).await.0,
        200
    );
    assert_eq!(fake.published("orders").len(), 5);

    let wrong_key = base64_of("not-the-key");
    let refusals: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no credential", vec![]),
        ("a wrong key", key(&wrong_key)),
        (
            "a signature made with another key",
            vec![(
                "aeg-sas-token",
                sas_token(&endpoint, later, &wrong_key).unwrap(),
            )],
        ),
        (
            "an expired signature",
            vec![(
                "aeg-sas-token",
                sas_token(&endpoint, Utc::now() - chrono::Duration::minutes(1), KEY).unwrap(),
            )],
        ),
        (
            "a signature for another topic",
            vec![(
                "aeg-sas-token",
                sas_token(&fake.endpoint("other"), later, KEY).unwrap(),
            )],
        ),
        (
            "a tampered signature",
            vec![("aeg-sas-token", token.replace("&e=", "&e=1"))],
        ),
    ];
    for (what, headers) in refusals {
        let (status, error) = publish(&fake, V, &headers, BATCH, body()).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(error["error"]["code"], "Unauthorized", "{what}");
    }
    assert_eq!(fake.stats().unauthorized, 6);
    assert_eq!(
        fake.published("orders").len(),
        5,
        "nothing refused was kept"
    );
}

fn url(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[actix_web::test]
async fn a_request_is_taken_whole_or_refused_whole_within_the_limits() {
    let fake = fake();
    let key = vec![("aeg-sas-key", KEY.to_owned())];
    let events = |n: usize| {
        let all: Vec<Value> = (0..n).map(|i| cloudevent(&format!("e-{i}"), "t")).collect();
        serde_json::to_vec(&all).unwrap()
    };
    // One event alone, in structured mode.
    let one = serde_json::to_vec(&cloudevent("single", "t")).unwrap();
    let single = "application/cloudevents+json; charset=utf-8";
    assert_eq!(publish(&fake, V, &key, single, one).await.0, 200);

    let mut bad_event = serde_json::from_slice::<Vec<Value>>(&events(3)).unwrap();
    bad_event[1].as_object_mut().unwrap().remove("type");
    let too_big = serde_json::to_vec(&json!([{
        "specversion": "1.0", "id": "big", "source": "s", "type": "t",
        "data": "x".repeat(1 << 20)
    }]))
    .unwrap();
    let refused: Vec<(&str, &str, &str, Vec<u8>, u16)> = vec![
        ("no API version", "", BATCH, events(1), 400),
        ("another media type", V, "application/xml", events(1), 400),
        ("not JSON", V, BATCH, b"[{".to_vec(), 400),
        ("no event", V, BATCH, b"[]".to_vec(), 400),
        (
            "an event without a type",
            V,
            BATCH,
            serde_json::to_vec(&bad_event).unwrap(),
            400,
        ),
        ("5,001 events", V, BATCH, events(5_001), 400),
        ("more than 1 MB", V, BATCH, too_big, 413),
    ];
    for (what, query, content_type, body, status) in refused {
        let (got, error) = publish(&fake, query, &key, content_type, body).await;
        assert_eq!(got, status, "{what}: {error}");
        assert!(error["error"]["message"].is_string(), "{what}: {error}");
    }
    assert_eq!(publish(&fake, V, &key, BATCH, events(5_000)).await.0, 200);
    assert_eq!(
        fake.published("orders").len(),
        5_001,
        "only what was taken whole"
    );
}

#[actix_web::test]
async fn a_subscription_needs_the_handshake_then_gets_its_events_with_retries() {
    let fake = fake();
    let refusing = Webhook::start("example.com", Arc::new(|_| Box::pin(async { 200 })));
    let refused = fake
        .subscribe("orders", Subscription::new("refusing", &refusing.url))
        .await;
    assert!(refused.unwrap_err().contains("example.com"));
    let nobody = fake
        .subscribe(
            "orders",
            Subscription::new("nobody", "http://127.0.0.1:9/x"),
        )
        .await;
    assert!(nobody.is_err());

    // Fails twice, then takes the event.
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let flaky = Webhook::start(
        "*",
        Arc::new(move |_| {
            let counted = counted.clone();
            Box::pin(async move {
                let mut n = counted.lock().unwrap();
                *n += 1;
                if *n <= 2 {
                    503
                } else {
                    200
                }
            })
        }),
    );
    fake.subscribe(
        "orders",
        Subscription::new("flaky", &flaky.url).event_types(&["wanted"]),
    )
    .await
    .unwrap();
    let poisoned = Webhook::answering(400);
    fake.subscribe("orders", Subscription::new("poisoned", &poisoned.url))
        .await
        .unwrap();
    let down = Webhook::answering(500);
    fake.subscribe(
        "orders",
        Subscription::new("down", &down.url).max_delivery_attempts(3),
    )
    .await
    .unwrap();

    let key = vec![("aeg-sas-key", KEY.to_owned())];
    let body = serde_json::to_vec(&json!([
        cloudevent("w-1", "wanted"),
        cloudevent("o-1", "other")
    ]))
    .unwrap();
    assert_eq!(publish(&fake, V, &key, BATCH, body).await.0, 200);

    assert!(
        until(Duration::from_secs(10), || fake
            .delivered("orders", "flaky")
            .len()
            == 1)
        .await
    );
    let deliveries = flaky.received();
    assert_eq!(deliveries.len(), 3, "two failures, then the delivery");
    let counts: Vec<&str> = deliveries
        .iter()
        .map(|d| d.headers["aeg-delivery-count"].as_str())
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);
    let last = &deliveries[2];
    assert_eq!(
        last.headers["content-type"],
        "application/cloudevents+json; charset=utf-8"
    );
    assert_eq!(last.headers["aeg-event-type"], "Notification");
    assert_eq!(last.headers["aeg-subscription-name"], "FLAKY");
    assert_eq!(
        last.json()["id"],
        "w-1",
        "one event per delivery, only of its types"
    );

    assert!(
        until(Duration::from_secs(10), || {
            fake.dead_lettered("orders", "poisoned").len() == 2
                && fake.dead_lettered("orders", "down").len() == 2
        })
        .await
    );
    let poison = &fake.dead_lettered("orders", "poisoned")[0];
    assert_eq!(poison.reason, "UndeliverableDueToHttp400");
    assert_eq!(poison.attempts, 1, "a 400 is not retried");
    let gave_up = &fake.dead_lettered("orders", "down")[0];
    assert_eq!(gave_up.reason, "MaxDeliveryAttemptsExceeded");
    assert_eq!((gave_up.attempts, gave_up.last_status), (3, Some(500)));
    assert_eq!(down.received().len(), 6);
}

#[actix_web::test]
async fn batched_delivery_sends_arrays_and_a_stopped_grid_delivers_later() {
    let mut fake = fake();
    let hook = Webhook::answering(200);
    fake.subscribe("orders", Subscription::new("batched", &hook.url).batch(3))
        .await
        .unwrap();
    let key = vec![("aeg-sas-key", KEY.to_owned())];
    let body = |from: usize| {
        let events: Vec<Value> = (from..from + 4)
            .map(|i| cloudevent(&format!("b-{i}"), "t"))
            .collect();
        serde_json::to_vec(&events).unwrap()
    };
    assert_eq!(publish(&fake, V, &key, BATCH, body(0)).await.0, 200);
    assert!(
        until(Duration::from_secs(5), || fake
            .delivered("orders", "batched")
            .len()
            == 4)
        .await
    );
    let sizes: Vec<usize> = hook
        .received()
        .iter()
        .map(|d| {
            assert!(d.headers["content-type"].starts_with("application/cloudevents-batch+json"));
            d.json().as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 4);
    assert!(sizes.iter().all(|n| *n <= 3));

    // Events taken before a stop are delivered after the restart.
    assert_eq!(publish(&fake, V, &key, BATCH, body(4)).await.0, 200);
    fake.stop().await;
    let before = fake.delivered("orders", "batched").len();
    let refused = reqwest::Client::new()
        .post(format!("{}{V}", fake.endpoint("orders")))
        .send()
        .await;
    assert!(refused.is_err(), "a stopped grid refuses connections");
    fake.restart();
    assert!(
        until(Duration::from_secs(5), || fake
            .delivered("orders", "batched")
            .len()
            == 8)
        .await
    );
    assert!(before <= 8);
}

fn command(size: usize) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::now_v7(),
        saga_id: SagaId::from_uuid(Uuid::now_v7()),
        saga_type: "order".into(),
        step: "charge-payment".into(),
        attempt: 1,
        participant: "payment".into(),
        command_type: "order.payment.charge.v1".into(),
        idempotency_key: "k".into(),
        data: json!({"pad": "x".repeat(size)}),
        created_at: Utc::now(),
        traceparent: None,
        publish_attempts: 0,
    }
}

#[actix_web::test]
async fn the_transport_signs_splits_what_the_topic_refuses_and_fails_only_the_command_at_fault() {
    // A topic that takes 8,000 bytes a request, less than the transport
    // batches: it must split what is refused as too large.
    let fake = FakeEventGrid::start(
        Config::new()
            .topic("orders", &[KEY])
            .max_request_bytes(8_000),
    );
    let transport = EventGridTransport::new(EventGridSettings {
        endpoint: fake.endpoint("orders"),
        key: KEY.into(),
        auth: EventGridAuth::Sas,
        ..EventGridSettings::default()
    })
    .unwrap();
    let small: Vec<OutboxMessage> = (0..5).map(|_| command(3_000)).collect();
    let huge = command(10_000);
    let mut batch = small.clone();
    batch.insert(2, huge.clone());
    let failed = transport.publish(&batch).await.unwrap_err().failed;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, huge.message_id);
    assert!(failed[0].1.permanent, "{}", failed[0].1);
    assert!(failed[0].1.reason.contains("413"), "{}", failed[0].1);

    let published = fake.published("orders");
    let ids: Vec<String> = published
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = small.iter().map(|m| m.message_id.to_string()).collect();
    assert_eq!(ids, expected, "every other command once, in order");
    let first = &published[0];
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["type"], "order.payment.charge.v1");
    assert_eq!(first["source"], "sagaplane");
    assert_eq!(first["subject"], small[0].saga_id.to_string());
    assert_eq!(first["sagastep"], "charge-payment");
    assert_eq!(fake.stats().unauthorized, 0, "the signature was taken");

    // A command larger than Event Grid takes at all is refused before sending.
    let requests = fake.stats().publish_requests;
    let failed = transport
        .publish(&[command(1_000_001)])
        .await
        .unwrap_err()
        .failed;
    assert!(failed[0].1.permanent);
    assert_eq!(fake.stats().publish_requests, requests);

    // A wrong key, a server error and a stopped grid are transient.
    let wrong = EventGridTransport::new(EventGridSettings {
        endpoint: fake.endpoint("orders"),
        key: base64_of("wrong").as_str().into(),
        ..EventGridSettings::default()
    })
    .unwrap();
    let failed = wrong.publish(&[command(10)]).await.unwrap_err().failed;
    assert!(!failed[0].1.permanent);
    assert!(failed[0].1.reason.contains("401"), "{}", failed[0].1);
    fake.fail_with(Some(503));
    let failed = transport
        .publish(&[command(10), command(10)])
        .await
        .unwrap_err()
        .failed;
    assert_eq!(failed.len(), 2);
    assert!(failed
        .iter()
        .all(|(_, e)| !e.permanent && e.reason.contains("503")));
}
