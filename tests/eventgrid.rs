//! Participants behind Azure Event Grid, against the project's stand-in: the
//! payment service's commands are published to a custom topic by sagaplane's
//! transport and pushed to the service's webhook; its replies are published
//! to another topic and pushed to `POST /v1/ingress/eventgrid`, after the
//! validation handshake.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use sagaplane_adapters::{EventGridAuth, EventGridSettings};
use sagaplane_api::auth::{Role, TokenSettings};
use sagaplane_eventgrid_fake::{Config, FakeEventGrid, Subscription};
use sagaplane_orchestrator::codec::{self, CloudEvent};
use sagaplane_sagas::{Outcome, Reply};
use serde_json::{json, Value};

use crate::eventgrid_fake::{Received, Webhook, KEY};
use crate::helpers::{assert_problem, order, spawn_app_with, TestApp};

const COMMANDS: &str = "payment-commands";
const REPLIES: &str = "sagaplane-replies";
const REPLY_KEY: &str = "cmVwbGllcy10b3BpYy1rZXk=";
const INGRESS_KEY: &str = "eventgrid-ingress-key";
/// Charges from this amount on are declined.
const DECLINED_FROM: i64 = 100_000;

fn grid() -> FakeEventGrid {
    FakeEventGrid::start(
        Config::new()
            .topic(COMMANDS, &[KEY])
            .topic(REPLIES, &[REPLY_KEY])
            .retry(Duration::from_millis(50), Duration::from_millis(300)),
    )
}

/// The payment service's reply to a command pushed to it.
fn payment_reply(command: &CloudEvent) -> CloudEvent {
    let charge = command.event_type == "order.payment.charge.v1";
    let declined = charge && command.data["amount_cents"].as_i64() >= Some(DECLINED_FROM);
    let reply = Reply {
        step: command.sagastep.clone().expect("sagastep"),
        attempt: command.sagaattempt.expect("sagaattempt"),
        outcome: if declined {
            Outcome::Refused {
                reason: "card declined".into(),
            }
        } else {
            Outcome::Succeeded
        },
        at: Utc::now(),
        result: (charge && !declined).then(|| json!({"charge_id": format!("ch-{}", command.id)})),
    };
    // The same command delivered again gets the same reply id.
    codec::reply_event(
        command,
        format!("reply-{}", command.id),
        "payment-service",
        &reply,
    )
}

async fn publish_reply(endpoint: &str, body: Vec<u8>) -> u16 {
    let sent = reqwest::Client::new()
        .post(format!("{endpoint}?api-version=2018-01-01"))
        .header("aeg-sas-key", REPLY_KEY)
        .header(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )
        .body(body)
        .send()
        .await;
    sent.map_or(0, |r| r.status().as_u16())
}

/// The payment service: publishes its reply to each command pushed to it,
/// and takes the command (200) only once its reply was taken, so Event Grid
/// delivers the command again otherwise.
fn payment_service(grid: &FakeEventGrid) -> Webhook {
    let endpoint = grid.endpoint(REPLIES);
    Webhook::start(
        "eventgrid.azure.net",
        Arc::new(move |delivery: Received| {
            let endpoint = endpoint.clone();
            Box::pin(async move {
                let command: CloudEvent = serde_json::from_slice(&delivery.body).unwrap();
                let reply = serde_json::to_vec(&payment_reply(&command)).unwrap();
                match publish_reply(&endpoint, reply).await {
                    200 => 200,
                    _ => 503,
                }
            })
        }),
    )
}

/// sagaplane with payment behind `grid`, publishing with `key`; a command is
/// dead-lettered after `budget` attempts to publish it.
async fn app_behind(grid: &FakeEventGrid, key: &str, budget: u32) -> TestApp {
    let transport = EventGridSettings {
        endpoint: grid.endpoint(COMMANDS),
        key: key.into(),
        auth: EventGridAuth::Sas,
        ..EventGridSettings::default()
    };
    spawn_app_with(move |s| {
        s.transports.eventgrid = Some(transport);
        s.routing.insert("payment".into(), "eventgrid".into());
        s.ingress.eventgrid.key = INGRESS_KEY.into();
        s.orchestrator.publish_max_attempts = budget;
        s.orchestrator.publish_backoff_initial_ms = 20;
        s.orchestrator.publish_backoff_max_ms = 100;
        s.orchestrator.outbox_sweep_interval_ms = 100;
    })
    .await
}

fn ingress_url(app: &TestApp) -> String {
    format!("{}/v1/ingress/eventgrid?code={INGRESS_KEY}", app.address)
}

/// Subscribes the payment service to the commands and sagaplane to the replies.
async fn wire(grid: &FakeEventGrid, app: &TestApp, payment: &Webhook) {
    grid.subscribe(COMMANDS, Subscription::new("payment-service", &payment.url))
        .await
        .unwrap();
    grid.subscribe(REPLIES, Subscription::new("sagaplane", ingress_url(app)))
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_saga_whose_payment_sits_behind_event_grid_completes_and_compensates() {
    let grid = grid();
    let app = app_behind(&grid, KEY, 1_000).await;
    let payment = payment_service(&grid);
    wire(&grid, &app, &payment).await;

    let done = app
        .start_order("eg-1", order("eg-1", "c-1", "BOOK-1", 2599))
        .await;
    let unconfirmed = app
        .start_order("eg-2", order("NOCONFIRM-eg-2", "c-1", "BOOK-1", 1299))
        .await;
    let declined = app
        .start_order("eg-3", order("eg-3", "c-1", "BOOK-1", DECLINED_FROM))
        .await;

    assert_eq!(app.settled(&done).await["status"], "completed");
    assert!(app
        .event_types(&done)
        .await
        .contains(&"PaymentCharged".to_owned()));

    let saga = app.settled(&unconfirmed).await;
    assert_eq!(saga["status"], "compensated", "{saga}");
    let types = app.event_types(&unconfirmed).await;
    assert!(types.contains(&"PaymentRefunded".to_owned()), "{types:?}");

    let saga = app.settled(&declined).await;
    assert_eq!(saga["status"], "compensated", "{saga}");
    assert!(
        saga["last_error"]
            .as_str()
            .unwrap()
            .contains("card declined"),
        "{saga}"
    );

    // Every payment command went through the topic as a CloudEvent, and
    // every reply came back through the ingress.
    let commands = grid.published(COMMANDS);
    let types: Vec<&str> = commands
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "order.payment.charge.v1")
            .count(),
        3
    );
    assert!(types.contains(&"order.payment.refund.v1"));
    assert!(commands.iter().all(|c| c["specversion"] == "1.0"));
    let delivered = grid.delivered(REPLIES, "sagaplane");
    assert_eq!(delivered.len(), commands.len());
    assert!(grid.dead_lettered(COMMANDS, "payment-service").is_empty());
    assert!(grid.dead_lettered(REPLIES, "sagaplane").is_empty());
    assert_eq!(
        grid.stats().unauthorized,
        0,
        "the transport's signature was taken"
    );
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM received_messages WHERE message_id LIKE 'reply-%'")
            .await,
        commands.len() as i64
    );
}

#[actix_web::test]
async fn a_topic_refusing_the_key_keeps_the_command_until_its_budget_then_dead_letters_it() {
    let grid = grid();
    let wrong = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("not the topic's key")
    };
    let app = app_behind(&grid, &wrong, 4).await;
    let id = app
        .start_order("eg-key", order("eg-key", "c-1", "BOOK-1", 500))
        .await;
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            app.count("SELECT count(*) FROM commands WHERE dead_lettered_at IS NOT NULL")
                .await
                == 1
        })
        .await
    );
    let (reason, attempts): (String, i32) = sqlx::query_as(
        "SELECT d.reason, o.publish_attempts FROM dead_letters d \
         JOIN outbox o ON o.message_id = d.outbox_message_id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(reason.contains("401"), "{reason}");
    assert_eq!(attempts, 4, "retried up to its budget");
    assert!(grid.published(COMMANDS).is_empty());
    assert_eq!(grid.stats().unauthorized, 4);
    assert_eq!(app.saga(&id).await["current_step"], "charge-payment");
}

#[actix_web::test]
async fn event_grid_down_then_back_loses_nothing_and_applies_nothing_twice() {
    let mut grid = grid();
    let app = app_behind(&grid, KEY, 1_000).await;
    let payment = payment_service(&grid);
    wire(&grid, &app, &payment).await;
    grid.stop().await;

    let ids = start_orders(&app, "eg-down", 3, 700).await;
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            app.count(
                "SELECT count(*) FROM commands WHERE sent_at IS NULL AND publish_attempts >= 2",
            )
            .await
                == 3
        })
        .await,
        "the charges wait in the outbox while Event Grid is down"
    );
    for id in &ids {
        assert_eq!(app.saga(id).await["current_step"], "charge-payment");
    }

    grid.restart();
    for id in &ids {
        assert_eq!(app.settled(id).await["status"], "completed");
        let charged = app
            .event_types(id)
            .await
            .iter()
            .filter(|t| *t == "PaymentCharged")
            .count();
        assert_eq!(charged, 1);
    }
    let charges = grid
        .published(COMMANDS)
        .iter()
        .filter(|c| c["type"] == "order.payment.charge.v1")
        .count();
    assert_eq!(charges, 3, "each command published once");
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 0);
}

async fn post(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/ingress/eventgrid{query}", app.address))
        .header("content-type", content_type)
        .header("aeg-subscription-name", "SAGAPLANE")
        .header("aeg-delivery-count", "0")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn dead_letters(app: &TestApp) -> Vec<(Vec<u8>, String, Value)> {
    sqlx::query_as(
        "SELECT raw, reason, headers FROM dead_letters WHERE channel = 'eventgrid' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

/// The outcome of each event, from the ingress's answer.
fn outcomes(body: &Value) -> Vec<&str> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect()
}

/// Starts `n` orders of `amount` keyed `<prefix>-<i>`; their ids.
async fn start_orders(app: &TestApp, prefix: &str, n: usize, amount: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        ids.push(
            app.start_order(&key, order(&key, "c-1", "BOOK-1", amount))
                .await,
        );
    }
    ids
}

/// The `n` commands the topic took, once it has (no one is subscribed: they
/// wait there to be answered by hand).
async fn commands_on_the_topic(app: &TestApp, grid: &FakeEventGrid, n: usize) -> Vec<CloudEvent> {
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            grid.published(COMMANDS).len() == n
        })
        .await
    );
    grid.published(COMMANDS)
        .into_iter()
        .map(|c| serde_json::from_value(c).unwrap())
        .collect()
}

#[actix_web::test]
async fn poison_events_are_dead_lettered_with_their_own_bytes_and_the_rest_applied() {
    let grid = grid();
    let app = app_behind(&grid, KEY, 1_000).await;
    let id = start_orders(&app, "eg-poison", 1, 900).await.remove(0);
    let command = commands_on_the_topic(&app, &grid, 1).await.remove(0);
    let good = serde_json::to_string(&payment_reply(&command)).unwrap();
    let not_a_reply = r#"{"specversion":"1.0","id":"x-1","source":"s","type":"something.else"}"#;
    let garbage = r#"{"hello": [1, 2]}"#;
    let batch = format!("[{good}, {not_a_reply},\n {garbage}]");
    let q = format!("?code={INGRESS_KEY}");

    let r = post(&app, &q, BATCH, batch.clone().into_bytes()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(outcomes(&body), ["applied", "unusable", "unusable"]);
    assert_eq!(body["events"][0]["id"], format!("reply-{}", command.id));
    assert!(body["events"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("something.else"));
    let letters = dead_letters(&app).await;
    assert_eq!(letters.len(), 2);
    assert_eq!(
        letters[0].0,
        not_a_reply.as_bytes(),
        "each kept with its own bytes"
    );
    assert_eq!(letters[1].0, garbage.as_bytes());
    assert_eq!(letters[0].2["batch_index"], 1);
    assert_eq!(letters[0].2["subscription"], "SAGAPLANE");
    assert_ne!(app.saga(&id).await["current_step"], "charge-payment");

    // Delivered again (Event Grid is at least once): nothing applied twice.
    let r = post(&app, &q, BATCH, batch.into_bytes()).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["events"][0]["outcome"], "duplicate");

    // A lone unusable event, a body that is no event, one too large: each a
    // clear error, and each kept.
    let single = "application/cloudevents+json; charset=utf-8";
    let r = post(&app, &q, single, not_a_reply.as_bytes().to_vec()).await;
    assert_problem(r, StatusCode::BAD_REQUEST).await;
    let r = post(&app, &q, single, b"\"just a string\"".to_vec()).await;
    let problem = assert_problem(r, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("kept as a dead letter"));
    let huge = vec![b'['; 2 * 1024 * 1024];
    let r = post(&app, &q, BATCH, huge).await;
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let letters = dead_letters(&app).await;
    assert_eq!(letters.len(), 7);
    assert_eq!(letters[5].0, b"\"just a string\"");
    assert_eq!(letters[6].0.len(), 1024 * 1024, "kept cut to the limit");

    // Poison a participant publishes: Event Grid pushes it, sagaplane keeps
    // it and answers 400, and Event Grid dead-letters it without retrying.
    grid.subscribe(REPLIES, Subscription::new("sagaplane", ingress_url(&app)))
        .await
        .unwrap();
    let poison = br#"{"specversion":"1.0","id":"p-1","source":"payment-service","type":"sagaplane.reply.v1","subject":"not-a-saga","data":{}}"#;
    assert_eq!(
        publish_reply(&grid.endpoint(REPLIES), poison.to_vec()).await,
        200
    );
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            grid.dead_lettered(REPLIES, "sagaplane").len() == 1
        })
        .await
    );
    let dropped = &grid.dead_lettered(REPLIES, "sagaplane")[0];
    assert_eq!(
        (dropped.reason.as_str(), dropped.attempts),
        ("UndeliverableDueToHttp400", 1)
    );
    let letters = dead_letters(&app).await;
    assert_eq!(letters.last().unwrap().0, poison);
    assert!(letters.last().unwrap().1.contains("not-a-saga"));
}

#[actix_web::test]
async fn the_ingress_answers_the_handshake_and_takes_only_its_key_or_a_participant_token() {
    let off = spawn_app_with(|_| {}).await;
    let options = |app: &TestApp, origin: Option<&str>| {
        let mut request = app.client.request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/ingress/eventgrid", app.address),
        );
        if let Some(origin) = origin {
            request = request.header("WebHook-Request-Origin", origin);
        }
        request.send()
    };
    let r = options(&off, Some("eventgrid.azure.net")).await.unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;
    let r = post(&off, "", "application/cloudevents+json", b"{}".to_vec()).await;
    assert_problem(r, StatusCode::NOT_FOUND).await;

    const PARTICIPANT: &str = "participant-token-0123";
    const VIEWER: &str = "viewer-token-0123";
    let app = spawn_app_with(|s| {
        s.ingress.eventgrid.key = INGRESS_KEY.into();
        s.auth.tokens = vec![
            TokenSettings {
                name: "payment".into(),
                token: PARTICIPANT.into(),
                roles: vec![Role::Participant],
            },
            TokenSettings {
                name: "viewer".into(),
                token: VIEWER.into(),
                roles: vec![Role::Viewer],
            },
        ];
    })
    .await;
    let r = options(&app, Some("eventgrid.azure.net")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["webhook-allowed-origin"], "eventgrid.azure.net");
    assert_eq!(r.headers()["webhook-allowed-rate"], "*");
    let r = options(&app, Some("attacker.example")).await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
    let r = options(&app, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["allow"], "OPTIONS, POST");

    // Past the key check, this body is refused as no reply (400): so a 400
    // means the caller was let in.
    let body = || b"{\"hello\": 1}".to_vec();
    let single = "application/cloudevents+json";
    for query in ["", "?code=wrong"] {
        let r = post(&app, query, single, body()).await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = post(&app, &format!("?code={INGRESS_KEY}"), single, body()).await;
    assert_problem(r, StatusCode::BAD_REQUEST).await;
    let with = |name: &'static str, value: String| {
        app.client
            .post(format!("{}/v1/ingress/eventgrid", app.address))
            .header("content-type", single)
            .header(name, value)
            .body(body())
            .send()
    };
    let r = with("x-api-key", INGRESS_KEY.into()).await.unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST).await;
    let r = with("authorization", format!("Bearer {PARTICIPANT}"))
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST).await;
    let r = with("authorization", format!("Bearer {VIEWER}"))
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
    let r = with("authorization", "Bearer nobody".into()).await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 3);

    // A subscription with the Event Grid schema: told what to change, nothing kept.
    let r = app
        .client
        .post(format!(
            "{}/v1/ingress/eventgrid?code={INGRESS_KEY}",
            app.address
        ))
        .header("aeg-event-type", "SubscriptionValidation")
        .json(
            &json!([{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                       "data": {"validationCode": "512d38b6"}}]),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("CloudEventSchemaV1_0"));
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 3);
}

#[actix_web::test]
async fn a_batch_with_an_event_the_database_refuses_is_answered_503_and_redelivered_whole() {
    let grid = grid();
    let app = app_behind(&grid, KEY, 1_000).await;
    let ids = start_orders(&app, "eg-503", 3, 900).await;
    let replies: Vec<CloudEvent> = commands_on_the_topic(&app, &grid, 3)
        .await
        .iter()
        .map(payment_reply)
        .collect();
    let batch = serde_json::to_vec(&replies).unwrap();
    // The database refuses to record the middle reply, as a full disk would.
    let refused = &replies[1].id;
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.message_id = '{refused}' THEN RAISE EXCEPTION 'no space left'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_one BEFORE INSERT ON saga_events FOR EACH ROW EXECUTE FUNCTION refuse_one();"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
    let q = format!("?code={INGRESS_KEY}");
    let r = post(&app, &q, BATCH, batch.clone()).await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
    // The others were applied; the refused one is not lost: nothing of it
    // was kept as if handled.
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 0);
    let inbox = "SELECT count(*) FROM received_messages WHERE message_id LIKE 'reply-%'";
    assert_eq!(app.count(inbox).await, 2);

    // Event Grid delivers the batch again once the database takes it.
    sqlx::raw_sql("DROP TRIGGER refuse_one ON saga_events")
        .execute(&app.pool)
        .await
        .unwrap();
    let r = post(&app, &q, BATCH, batch).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(outcomes(&body), ["duplicate", "applied", "duplicate"]);
    for id in &ids {
        assert_eq!(app.settled(id).await["status"], "completed");
    }
}
