//! Batches against a real PostgreSQL, a fresh database per test.

use chrono::Utc;
use sagaplane_orchestrator::ports::{NewEvent, NewSaga, OutboxMessage};
use sagaplane_sagas::{SagaId, Status, View};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::*;
use crate::postgres::connect;

async fn pool() -> PgPool {
    connect::test_pool(2).await
}

fn step(saga: SagaId, expected: u64, key: Option<&str>, inbox: Option<&str>) -> Arc<StepCommit> {
    Arc::new(StepCommit {
        saga_id: saga,
        saga_type: "order".into(),
        expected_version: expected,
        new_saga: key.map(|k| NewSaga {
            business_key: k.into(),
            input: json!({}),
            traceparent: None,
        }),
        events: vec![NewEvent {
            event_type: "Tested".into(),
            data: json!({ "seq": expected + 1 }),
            at: Utc::now(),
        }],
        view: View {
            status: Status::Running,
            step: None,
            attempt: None,
            step_since: None,
            participant: None,
            max_attempts: None,
            wake_at: None,
            last_error: None,
        },
        outbox: Vec::new(),
        relay_pos: None,
        inbox: inbox.map(str::to_owned),
        at: Utc::now(),
    })
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn each_step_of_a_batch_gets_its_own_outcome_and_losers_leave_nothing() {
    let pool = pool().await;
    let [a, b, c, d, e] = [(); 5].map(|_| SagaId::from_uuid(Uuid::now_v7()));
    let setup = [
        step(c, 0, Some("c"), None),
        step(d, 0, Some("d"), None),
        step(e, 0, Some("e"), None),
        step(d, 1, None, Some("m-seen")),
    ];
    let mut conn = pool.acquire().await.unwrap();
    for s in &setup {
        let outcome = commit_batch(&mut conn, std::slice::from_ref(s))
            .await
            .unwrap();
        assert!(
            matches!(outcome[..], [Ok(CommitOutcome::Committed)]),
            "{outcome:?}"
        );
    }

    let batch = [
        step(a, 0, Some("a"), None),       // new: committed
        step(b, 0, Some("c"), None),       // key of c: taken
        step(c, 0, None, Some("m-stale")), // c is at version 1: conflict
        step(d, 2, None, Some("m-seen")),  // inbox already has it: duplicate
        step(e, 1, None, Some("m-new")),   // committed
        step(e, 1, None, Some("m-new")),   // same message twice in the batch
    ];
    let outcomes = commit_batch(&mut conn, &batch).await.unwrap();
    assert!(matches!(outcomes[0], Ok(CommitOutcome::Committed)));
    assert!(matches!(outcomes[1], Ok(CommitOutcome::BusinessKeyTaken)));
    assert!(matches!(outcomes[2], Err(StoreError::Conflict)));
    assert!(matches!(outcomes[3], Ok(CommitOutcome::DuplicateInbox)));
    assert!(matches!(outcomes[4], Ok(CommitOutcome::Committed)));
    assert!(matches!(outcomes[5], Ok(CommitOutcome::DuplicateInbox)));

    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM received_messages WHERE message_id = 'm-stale'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM received_messages WHERE message_id = 'm-new'"
        )
        .await,
        1
    );
    let id = b.as_uuid();
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM sagas WHERE id = '{id}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM saga_events WHERE saga_id = '{id}'")
        )
        .await,
        0
    );
    for (saga, version) in [(a, 1), (c, 1), (d, 2), (e, 2)] {
        let id = saga.as_uuid();
        let sql = format!("SELECT max(seq) FROM saga_events WHERE saga_id = '{id}'");
        assert_eq!(count(&pool, &sql).await, version, "events of {saga}");
        let sql = format!("SELECT version FROM sagas WHERE id = '{id}'");
        assert_eq!(count(&pool, &sql).await, version, "row of {saga}");
    }
}

/// A step of `saga` that sends one command with `message_id`.
fn sending(saga: SagaId, expected: u64, message_id: Uuid) -> Arc<StepCommit> {
    let mut step = (*step(saga, expected, None, None)).clone();
    let at = step.events[0].at;
    step.outbox.push(OutboxMessage {
        message_id,
        saga_id: saga,
        saga_type: "order".into(),
        step: "pay".into(),
        attempt: 1,
        participant: "payments".into(),
        command_type: "Charge".into(),
        idempotency_key: format!("{saga}:pay"),
        data: json!({}),
        created_at: at,
        traceparent: None,
        publish_attempts: 0,
    });
    Arc::new(step)
}

/// A step of `saga` whose command is kept on its event, at relay `position`.
fn kept(saga: SagaId, expected: u64, position: u64) -> Arc<StepCommit> {
    let mut step = (*sending(saga, expected, Uuid::now_v7())).clone();
    step.relay_pos = Some(position);
    Arc::new(step)
}

/// An outcome as the test compares it: a database failure by kind only.
fn kind(outcome: &StepOutcome) -> String {
    match outcome {
        Ok(o) => format!("{o:?}"),
        Err(StoreError::Database(_)) => "Database".into(),
        Err(e) => format!("{e:?}"),
    }
}

async fn rows(pool: &PgPool) -> Vec<i64> {
    let mut rows = Vec::new();
    for table in [
        "sagas",
        "saga_events",
        "received_messages",
        "outbox",
        "commands",
        "saga_events WHERE commands IS NOT NULL AND relay_pos = 7",
        // Kept without what its event holds or leads to.
        "saga_events WHERE relay_pos = 7 AND NOT commands->0 ?| \
         array['saga_id', 'saga_type', 'created_at', 'idempotency_key', 'publish_attempts']",
    ] {
        rows.push(count(pool, &format!("SELECT count(*) FROM {table}")).await);
    }
    rows
}

#[tokio::test]
async fn a_step_written_alone_ends_as_in_a_batch_of_one() {
    let (alone, batched) = (pool().await, pool().await);
    let [a, b, c] = [(); 3].map(|_| SagaId::from_uuid(Uuid::now_v7()));
    let sent = Uuid::now_v7();
    let mut poison = (*step(c, 0, Some("c"), None)).clone();
    // PostgreSQL text cannot hold a NUL character.
    poison.view.last_error = Some("bad\0byte".into());
    let cases = [
        (step(a, 0, Some("a"), None), "Committed"),
        (step(b, 0, Some("a"), None), "BusinessKeyTaken"),
        (step(a, 1, None, Some("m1")), "Committed"),
        (step(a, 2, None, Some("m1")), "DuplicateInbox"),
        (step(a, 1, None, Some("m2")), "Conflict"),
        (step(a, 1, None, Some("m1")), "DuplicateInbox"),
        // The stale attempt above left no inbox row behind.
        (step(a, 2, None, Some("m2")), "Committed"),
        (step(b, 1, None, None), "Conflict"),
        (Arc::new(poison), "Database"),
        (sending(a, 3, sent), "Committed"),
        (sending(a, 4, sent), "Conflict"),
        (step(a, 4, None, None), "Committed"),
        (kept(a, 5, 7), "Committed"),
        (kept(a, 5, 8), "Conflict"),
        // Epoch 1's relay has no row (taken over as gone).
        (kept(a, 6, (1 << 40) + 1), "RelayGone"),
    ];
    for pool in [&alone, &batched] {
        sqlx::query(
            "INSERT INTO relays (epoch, node, published_below, seen_at) VALUES (0, 'a', 0, now())",
        )
        .execute(pool)
        .await
        .unwrap();
    }
    // One connection each, kept throughout: a step the database failed (the
    // NUL byte) leaves it fit for the next.
    let mut one = alone.acquire().await.unwrap();
    let mut many = batched.acquire().await.unwrap();
    for (n, (step, expected)) in cases.iter().enumerate() {
        let one = commit_one(&mut one, step).await;
        let batch = match commit_batch(&mut many, std::slice::from_ref(step)).await {
            Ok(mut outcomes) => outcomes.pop().expect("one outcome"),
            Err(e) => Err(e),
        };
        assert_eq!(kind(&one), *expected, "case {n} alone");
        assert_eq!(kind(&batch), *expected, "case {n} in a batch");
        assert_eq!(rows(&alone).await, rows(&batched).await, "case {n}");
    }
    // The kept command is on its event, not in the outbox, and listed once.
    assert_eq!(rows(&alone).await, [1, 6, 2, 1, 2, 1, 1]);
}

/// Nodes applying one message to different sagas at the same moment, alone
/// and in batches: whichever check each passes, the message is applied once
/// and every other writer is told it is a duplicate.
#[tokio::test]
async fn a_message_raced_by_concurrent_writers_is_applied_once() {
    let pool = connect::test_pool(4).await;
    for round in 0..10 {
        let sagas = [(); 4].map(|_| SagaId::from_uuid(Uuid::now_v7()));
        for (n, saga) in sagas.iter().enumerate() {
            let key = format!("race-{round}-{n}");
            let mut conn = pool.acquire().await.unwrap();
            let created = commit_one(&mut conn, &step(*saga, 0, Some(&key), None)).await;
            assert!(matches!(created, Ok(CommitOutcome::Committed)));
        }
        let message = format!("m-race-{round}");
        let steps = sagas.map(|s| step(s, 1, None, Some(&message)));
        let pool = &pool;
        let alone = |s: Arc<StepCommit>| async move {
            commit_one(&mut pool.acquire().await.unwrap(), &s).await
        };
        // As the committer does: a failed batch is written again step by step.
        let batched = |s: Arc<StepCommit>| async move {
            let other = SagaId::from_uuid(Uuid::now_v7());
            let key = other.to_string();
            let batch = [s.clone(), step(other, 0, Some(&key), None)];
            let mut conn = pool.acquire().await.unwrap();
            match commit_batch(&mut conn, &batch).await {
                Ok(mut outcomes) => outcomes.swap_remove(0),
                Err(_) => commit_one(&mut conn, &s).await,
            }
        };
        let [s0, s1, s2, s3] = steps;
        let (a, b, c, d) = tokio::join!(alone(s0), alone(s1), batched(s2), batched(s3));
        let outcomes: Vec<String> = [a, b, c, d].iter().map(kind).collect();
        let applied = outcomes.iter().filter(|o| *o == "Committed").count();
        let duplicates = outcomes.iter().filter(|o| *o == "DuplicateInbox").count();
        assert_eq!((applied, duplicates), (1, 3), "round {round}: {outcomes:?}");
        let sql = format!("SELECT count(*) FROM saga_events WHERE message_id = '{message}'");
        assert_eq!(count(pool, &sql).await, 1, "round {round}");
    }
}
