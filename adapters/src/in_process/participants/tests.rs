//! What the participants remember, in memory and in PostgreSQL (a fresh
//! database per test).

use sagaplane_sagas::SagaId;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::in_process::SimulatorRule;
use crate::{GroupCommit, PgEventStore};

fn command(idempotency_key: &str) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::new_v4(),
        saga_id: SagaId::from_uuid(Uuid::now_v7()),
        saga_type: "test".into(),
        step: "a-step".into(),
        attempt: 1,
        participant: "p".into(),
        command_type: "t.v1".into(),
        idempotency_key: idempotency_key.into(),
        data: json!({ "k": "v" }),
        created_at: Utc::now(),
        traceparent: None,
        publish_attempts: 0,
    }
}

/// Succeeds with a result until repaired, then with none: a redelivery after
/// the repair shows whether the first result was remembered.
fn participants() -> SimulatedParticipants {
    let rule = SimulatorRule {
        participant: "p".into(),
        answer: "succeed".into(),
        result: Some(json!({ "id": "r-{idempotency_key}" })),
        until_repaired: true,
        ..SimulatorRule::default()
    };
    SimulatedParticipants::new(SimulatorSettings {
        rules: vec![rule],
        default_rules: false,
        ..SimulatorSettings::default()
    })
    .expect("valid rules")
}

fn with_result(key: &str) -> Option<Answer> {
    Some(Answer {
        outcome: Outcome::Succeeded,
        result: Some(json!({ "id": format!("r-{key}") })),
    })
}

fn without_result() -> Option<Answer> {
    Some(Answer {
        outcome: Outcome::Succeeded,
        result: None,
    })
}

#[tokio::test]
async fn a_success_gives_its_result_again_on_redelivery() {
    let p = participants();
    assert_eq!(p.answer(&command("s:1")).await, with_result("s:1"));
    p.repair();
    assert_eq!(p.answer(&command("s:1")).await, with_result("s:1"));
    assert_eq!(p.effects("s:1"), 1, "applied once");
    assert_eq!(p.answer(&command("s:2")).await, without_result());
}

#[tokio::test]
async fn a_refusal_is_remembered_and_a_transient_failure_is_not() {
    let rule = |answer: &str, participant: &str| SimulatorRule {
        participant: participant.into(),
        answer: answer.into(),
        until_repaired: true,
        ..SimulatorRule::default()
    };
    let p = SimulatedParticipants::new(SimulatorSettings {
        rules: vec![rule("refuse", "p"), rule("fail", "q")],
        default_rules: false,
        ..SimulatorSettings::default()
    })
    .unwrap();
    let mut q = command("q:1");
    q.participant = "q".into();
    let refused = p.answer(&command("p:1")).await.unwrap().outcome;
    assert!(matches!(refused, Outcome::Refused { .. }), "{refused:?}");
    let failed = p.answer(&q).await.unwrap().outcome;
    assert!(matches!(failed, Outcome::Failed { .. }), "{failed:?}");
    p.repair();
    assert_eq!(p.answer(&command("p:1")).await.unwrap().outcome, refused);
    assert_eq!(p.answer(&q).await, without_result());
}

#[tokio::test]
async fn a_durable_success_gives_its_result_again_after_a_restart() {
    let server = std::env::var("SAGAPLANE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = format!("{server}/sagaplane_test_{}", Uuid::new_v4().simple());
    let store = PgEventStore::connect(&url, 2, GroupCommit::default())
        .await
        .expect("the database opens");
    let pool = store.pool().clone();
    let p = participants()
        .with_durable_memory(pool.clone())
        .await
        .unwrap();
    assert_eq!(p.answer(&command("s:1")).await, with_result("s:1"));

    // Repaired and restarted: the rule is gone, the memory is not.
    let restarted = participants()
        .with_durable_memory(pool.clone())
        .await
        .unwrap();
    restarted.repair();
    assert_eq!(restarted.answer(&command("s:1")).await, with_result("s:1"));
    assert_eq!(restarted.answer(&command("s:2")).await, without_result());
    let applications: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM simulator_applications WHERE idempotency_key = 's:1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(applications, 1);
}
