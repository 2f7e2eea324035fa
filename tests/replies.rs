//! Participant replies are applied once; the rest is recorded, never dropped.

use chrono::Utc;
use sagaplane_orchestrator::{Handled, Inbound};
use sagaplane_sagas::{Outcome, Rejection, Reply, SagaId, Status};
use serde_json::Value;
use std::time::Duration;

use crate::helpers::{order, spawn_app, spawn_app_with, TestApp};

fn inbound(saga: &str, message_id: &str, step: &str) -> Inbound {
    let reply = Reply {
        step: step.into(),
        attempt: 1,
        outcome: Outcome::Succeeded,
        at: Utc::now(),
        result: None,
    };
    Inbound {
        channel: "test".into(),
        message_id: message_id.into(),
        saga_id: saga.parse().unwrap(),
        raw: serde_json::to_vec(&reply).unwrap(),
        traceparent: None,
        reply,
    }
}

async fn saga(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/sagas/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_duplicate_reply_changes_nothing() {
    let app = spawn_app().await;
    // Payment never answers a HANG- customer: the saga waits at charge-payment.
    let id = app
        .start_order("r-1", order("o", "HANG-c", "SKU-1", 100))
        .await;
    let waiting = app
        .eventually(Duration::from_secs(5), || async {
            saga(&app, &id).await["current_step"] == "charge-payment"
        })
        .await;
    assert!(waiting, "the saga reaches charge-payment");
    let parked = saga(&app, &id).await;
    let since = parked["step_since"].as_str().expect("waiting since when");
    assert!(since >= parked["created_at"].as_str().unwrap(), "{parked}");

    let first = app
        .orchestrator
        .receive(inbound(&id, "m-1", "charge-payment"))
        .await
        .unwrap();
    assert!(
        matches!(first, Handled::Applied { version: 3, .. }),
        "{first:?}"
    );
    let done = app.settled(&id).await;
    assert_eq!(done["status"], "completed");
    let events = app.events(&id).await;

    let again = app
        .orchestrator
        .receive(inbound(&id, "m-1", "charge-payment"))
        .await
        .unwrap();
    assert_eq!(again, Handled::Duplicate);
    assert_eq!(saga(&app, &id).await["version"], done["version"]);
    assert_eq!(app.events(&id).await, events);
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM received_messages WHERE message_id = 'm-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcome, "applied");
}

#[actix_web::test]
async fn a_late_reply_is_recorded_but_not_applied() {
    let app = spawn_app().await;
    let id = app.start_order("r-2", order("o", "c", "SKU-1", 100)).await;
    let done = app.settled(&id).await;

    let late = app
        .orchestrator
        .receive(inbound(&id, "m-late", "reserve-inventory"))
        .await
        .unwrap();
    assert!(matches!(late, Handled::Ignored(_)), "{late:?}");
    let (outcome, detail): (String, String) =
        sqlx::query_as("SELECT outcome, detail FROM received_messages WHERE message_id = 'm-late'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcome, "ignored");
    assert!(detail.contains("completed"), "{detail}");
    assert_eq!(saga(&app, &id).await["version"], done["version"]);

    let again = app
        .orchestrator
        .receive(inbound(&id, "m-late", "reserve-inventory"))
        .await
        .unwrap();
    assert_eq!(again, Handled::Duplicate);
}

#[actix_web::test]
async fn a_reply_for_an_unknown_saga_is_dead_lettered_with_its_bytes() {
    let app = spawn_app().await;
    let stranger = SagaId::from_uuid(uuid::Uuid::new_v4()).to_string();
    let message = inbound(&stranger, "m-x", "charge-payment");
    let raw = message.raw.clone();
    let handled = app.orchestrator.receive(message).await.unwrap();
    assert_eq!(handled, Handled::DeadLettered);
    let (channel, reason, stored): (String, String, Vec<u8>) =
        sqlx::query_as("SELECT channel, reason, raw FROM dead_letters")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(channel, "test");
    assert!(reason.contains(&stranger), "{reason}");
    assert_eq!(stored, raw);
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 0);
}

#[actix_web::test]
async fn a_step_decided_on_stale_state_is_decided_again_never_written_over() {
    let a = spawn_app().await;
    // A second orchestrator on the same database, as a second process would be.
    let b = spawn_app_with(|s| s.database.url = Some(a.database_url.clone())).await;
    let id = a
        .start_order("s-1", order("o", "HANG-c", "SKU-1", 100))
        .await;
    let waiting = a
        .eventually(Duration::from_secs(5), || async {
            saga(&a, &id).await["current_step"] == "charge-payment"
        })
        .await;
    assert!(waiting);
    // b's actor loads the saga at version 2 and keeps that state.
    let woken = b
        .orchestrator
        .wake(id.parse().unwrap(), "order".into())
        .await
        .unwrap();
    assert_eq!(woken, Handled::NothingDue);

    // a moves the saga on to completed.
    a.orchestrator
        .receive(inbound(&id, "m-a", "charge-payment"))
        .await
        .unwrap();
    assert_eq!(a.settled(&id).await["status"], "completed");

    // b decides on its stale state, loses the version race, reloads and ignores.
    let handled = b
        .orchestrator
        .receive(inbound(&id, "m-b", "charge-payment"))
        .await
        .unwrap();
    assert_eq!(
        handled,
        Handled::Ignored(Rejection::Terminal(Status::Completed))
    );
    let types = a.event_types(&id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "PaymentCharged").count(),
        1,
        "{types:?}"
    );
    let seqs: Vec<i64> = a
        .events(&id)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}
