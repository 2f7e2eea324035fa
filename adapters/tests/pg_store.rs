//! The PostgreSQL event store against a real server, a fresh database per test.

use chrono::{Duration, DurationRound, Utc};
use std::sync::Arc;

use sagaplane_adapters::{GroupCommit, PgEventStore};
use sagaplane_orchestrator::ports::prelude::*;
use sagaplane_orchestrator::ports::{
    CommitOutcome, DeadLetter, NewEvent, NewSaga, OutboxMessage, PublishFailure, SagaFilter,
    StepCommit, StoreError,
};
use sagaplane_sagas::{SagaId, Status, View};
use serde_json::json;
use uuid::Uuid;

async fn store() -> PgEventStore {
    store_with(GroupCommit::default()).await
}

async fn store_with(group_commit: GroupCommit) -> PgEventStore {
    let server = std::env::var("SAGAPLANE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = format!("{server}/sagaplane_test_{}", Uuid::new_v4().simple());
    PgEventStore::connect(&url, 4, group_commit)
        .await
        .expect("the store opens")
}

/// Every partition.
const ALL: u64 = u64::MAX;

fn view(status: Status, wake_in_ms: Option<i64>) -> View {
    View {
        status,
        step: Some("step".into()),
        attempt: Some(1),
        step_since: None,
        participant: None,
        max_attempts: None,
        wake_at: wake_in_ms.map(|ms| Utc::now() + Duration::milliseconds(ms)),
        last_error: None,
    }
}

/// A step appending `n` events on top of `expected_version`.
fn step(saga: SagaId, expected_version: u64, n: usize, key: Option<&str>) -> StepCommit {
    let now = Utc::now();
    StepCommit {
        saga_id: saga,
        saga_type: "order".into(),
        expected_version,
        new_saga: key.map(|k| NewSaga {
            business_key: k.into(),
            input: json!({ "k": k }),
            traceparent: None,
        }),
        events: (0..n)
            .map(|i| NewEvent {
                event_type: "Tested".into(),
                data: json!({ "n": expected_version as usize + i + 1 }),
                at: now,
            })
            .collect(),
        view: view(Status::Running, None),
        outbox: Vec::new(),
        relay_pos: None,
        inbox: None,
        at: now,
    }
}

fn saga() -> SagaId {
    SagaId::from_uuid(Uuid::now_v7())
}

#[tokio::test]
async fn a_stale_append_fails_and_overwrites_nothing() {
    let store = store().await;
    let id = saga();
    assert_eq!(
        store
            .commit(Arc::new(step(id, 0, 1, Some("a"))))
            .await
            .unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store.commit(Arc::new(step(id, 1, 2, None))).await.unwrap(),
        CommitOutcome::Committed
    );
    let stale = store.commit(Arc::new(step(id, 1, 1, None))).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");

    let history = store.load(id).await.unwrap().unwrap();
    assert_eq!(history.version, 3);
    let ns: Vec<i64> = history
        .events
        .iter()
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3]);
    assert_eq!(store.get(id).await.unwrap().unwrap().version, 3);
}

#[tokio::test]
async fn of_two_racing_appends_on_one_version_exactly_one_wins() {
    let store = store().await;
    let id = saga();
    store
        .commit(Arc::new(step(id, 0, 1, Some("race"))))
        .await
        .unwrap();
    for round in 1..=20u64 {
        let (a, b) = (step(id, round, 1, None), step(id, round, 1, None));
        let (a, b) = tokio::join!(
            store.commit(Arc::new(a.clone())),
            store.commit(Arc::new(b.clone()))
        );
        let wins = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Ok(CommitOutcome::Committed)))
            .count();
        let conflicts = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict)))
            .count();
        assert_eq!((wins, conflicts), (1, 1), "round {round}: {a:?} {b:?}");
    }
    assert_eq!(store.load(id).await.unwrap().unwrap().version, 21);
}

#[tokio::test]
async fn a_message_already_in_the_inbox_writes_nothing() {
    let store = store().await;
    let id = saga();
    store
        .commit(Arc::new(step(id, 0, 1, Some("inbox"))))
        .await
        .unwrap();
    let mut first = step(id, 1, 1, None);
    first.inbox = Some("msg-1".into());
    assert_eq!(
        store.commit(Arc::new(first.clone())).await.unwrap(),
        CommitOutcome::Committed
    );
    let mut again = step(id, 2, 1, None);
    again.inbox = Some("msg-1".into());
    assert_eq!(
        store.commit(Arc::new(again.clone())).await.unwrap(),
        CommitOutcome::DuplicateInbox
    );
    assert_eq!(store.load(id).await.unwrap().unwrap().version, 2);
    assert!(!store.record_ignored("msg-1", id, "late").await.unwrap());
    assert!(store.record_ignored("msg-2", id, "late").await.unwrap());
    assert!(!store.record_ignored("msg-2", id, "late").await.unwrap());
}

#[tokio::test]
async fn a_business_key_is_taken_once() {
    let store = store().await;
    let (a, b) = (saga(), saga());
    let (sa, sb) = (step(a, 0, 1, Some("same")), step(b, 0, 1, Some("same")));
    let (ra, rb) = tokio::join!(
        store.commit(Arc::new(sa.clone())),
        store.commit(Arc::new(sb.clone()))
    );
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [CommitOutcome::BusinessKeyTaken, CommitOutcome::Committed]
    );
    let found = store.find_by_key("order", "same").await.unwrap().unwrap();
    assert!(found.id == a || found.id == b);
    assert!(store.find_by_key("order", "other").await.unwrap().is_none());
    assert!(store.load(saga()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_step_the_database_refuses_fails_alone() {
    // One writer: the steps queue behind the first and share a batch, which
    // the poison step fails, so that batch is written again step by step.
    let store = store_with(GroupCommit {
        concurrency: 1,
        max_batch: 64,
        on_batch: None,
    })
    .await;
    let good: Vec<StepCommit> = (0..20)
        .map(|i| step(saga(), 0, 1, Some(&format!("k{i}"))))
        .collect();
    let mut poison = step(saga(), 0, 1, Some("p"));
    // PostgreSQL text cannot hold a NUL character.
    poison.view.last_error = Some("bad\0byte".into());
    let mut all = good;
    all.insert(7, poison);
    let results =
        futures_util::future::join_all(all.into_iter().map(|s| store.commit(Arc::new(s)))).await;
    assert!(
        matches!(results[7], Err(StoreError::Database(_))),
        "{:?}",
        results[7]
    );
    let committed = results
        .iter()
        .filter(|r| matches!(r, Ok(CommitOutcome::Committed)))
        .count();
    assert_eq!(committed, 20);
    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sagas, 20);
}

#[tokio::test]
async fn outbox_rows_stay_unsent_until_marked_and_due_timers_are_found() {
    let store = store().await;
    let id = saga();
    let mut first = step(id, 0, 1, Some("outbox"));
    first.view = view(Status::Running, Some(-10));
    first.outbox = (1..=2)
        .map(|attempt| OutboxMessage {
            message_id: Uuid::now_v7(),
            saga_id: id,
            saga_type: "order".into(),
            step: "reserve-inventory".into(),
            attempt,
            participant: "inventory".into(),
            command_type: "order.inventory.reserve.v1".into(),
            idempotency_key: format!("{id}:reserve-inventory"),
            data: json!({ "attempt": attempt }),
            // PostgreSQL keeps microseconds.
            created_at: (Utc::now() - Duration::seconds(1))
                .duration_trunc(Duration::microseconds(1))
                .unwrap(),
            traceparent: None,
            publish_attempts: 0,
        })
        .collect();
    store.commit(Arc::new(first.clone())).await.unwrap();
    let now = Utc::now();
    let unsent = store.unsent(now, Duration::zero(), 10, ALL).await.unwrap();
    assert_eq!(unsent, first.outbox, "read back whole, in commit order");
    assert!(
        store
            .unsent(now, Duration::minutes(1), 10, ALL)
            .await
            .unwrap()
            .is_empty(),
        "rows younger than the grace are the live path's"
    );
    store
        .mark_sent(&[first.outbox[0].message_id])
        .await
        .unwrap();
    let unsent = store.unsent(now, Duration::zero(), 10, ALL).await.unwrap();
    assert_eq!(unsent, first.outbox[1..]);

    // A failed publish waits for its retry time; a dead letter is out of line
    // until requeued, and leaves one dead-letter row naming it.
    let m = first.outbox[1].message_id;
    let retry_at = Utc::now() + Duration::seconds(30);
    store
        .publish_failed(&[PublishFailure::Retry {
            message: first.outbox[1].clone(),
            error: "broker down".into(),
            at: retry_at,
        }])
        .await
        .unwrap();
    assert!(store
        .unsent(Utc::now(), Duration::zero(), 10, ALL)
        .await
        .unwrap()
        .is_empty());
    let due = store
        .unsent(retry_at, Duration::zero(), 10, ALL)
        .await
        .unwrap();
    assert_eq!(due[0].publish_attempts, 1);
    let letter = DeadLetter {
        channel: "outbox:inventory".into(),
        reason: "gave up".into(),
        raw: b"{}".to_vec(),
        headers: json!({}),
        outbox_message_id: Some(m),
    };
    let dead = PublishFailure::DeadLetter {
        message: first.outbox[1].clone(),
        error: "still down".into(),
        letter,
    };
    store
        .publish_failed(std::slice::from_ref(&dead))
        .await
        .unwrap();
    store.publish_failed(&[dead]).await.unwrap();
    let far = Utc::now() + Duration::days(1);
    assert!(store
        .unsent(far, Duration::zero(), 10, ALL)
        .await
        .unwrap()
        .is_empty());
    let letters: Vec<(Option<Uuid>,)> =
        sqlx::query_as("SELECT outbox_message_id FROM dead_letters")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        letters,
        [(Some(m),)],
        "one dead letter, however often it is reported"
    );
    let requeued = store
        .requeue(m)
        .await
        .unwrap()
        .expect("it was dead-lettered");
    assert_eq!(requeued.publish_attempts, 0);
    assert!(store.requeue(m).await.unwrap().is_none());
    assert_eq!(
        store
            .unsent(Utc::now(), Duration::zero(), 10, ALL)
            .await
            .unwrap()
            .len(),
        1
    );

    let due = store.due(Utc::now(), 10, ALL).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].saga_id, due[0].saga_type.as_str()), (id, "order"));
    assert!(due[0].wake_at < Utc::now());
    let mut next = step(id, 1, 1, None);
    next.view = view(Status::Running, Some(60_000));
    store.commit(Arc::new(next.clone())).await.unwrap();
    assert!(store.due(Utc::now(), 10, ALL).await.unwrap().is_empty());
}

#[tokio::test]
async fn nodes_share_the_partitions_and_take_over_a_dead_ones() {
    let store = store().await;
    let ttl = std::time::Duration::from_secs(30);
    let a = store.lease_partitions("a", ttl).await.unwrap();
    assert_eq!(a, u64::MAX, "alone, a node holds every partition");
    // B joins: nothing is free yet, so it waits for A to give half back.
    assert_eq!(store.lease_partitions("b", ttl).await.unwrap(), 0);
    let a = store.lease_partitions("a", ttl).await.unwrap();
    assert_eq!(a.count_ones(), 32);
    let b = store.lease_partitions("b", ttl).await.unwrap();
    assert_eq!(b.count_ones(), 32);
    assert_eq!(a & b, 0, "no partition has two owners");
    assert_eq!(a | b, u64::MAX);
    // A dies: its heartbeat and leases run out, and B takes everything.
    sqlx::query(
        "UPDATE cluster_nodes SET heartbeat_at = now() - interval '1 minute' WHERE node = 'a'",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE partition_leases SET expires_at = now() - interval '1 second' WHERE owner = 'a'",
    )
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(store.lease_partitions("b", ttl).await.unwrap(), u64::MAX);

    // Timers are found only in the partitions asked for.
    let id = saga();
    let mut first = step(id, 0, 1, Some("due"));
    first.view = view(Status::Running, Some(-10));
    store.commit(Arc::new(first)).await.unwrap();
    let partition: i32 = sqlx::query_scalar("SELECT partition FROM sagas WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(store.pool())
        .await
        .unwrap();
    let only = 1u64 << partition;
    assert_eq!(store.due(Utc::now(), 10, only).await.unwrap().len(), 1);
    assert!(store.due(Utc::now(), 10, !only).await.unwrap().is_empty());
}

/// A command of `saga`, as a step decides it.
fn command(saga: SagaId, n: u32) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::now_v7(),
        saga_id: saga,
        saga_type: "order".into(),
        step: "charge-payment".into(),
        attempt: n,
        participant: "payments".into(),
        command_type: "order.payment.charge.v1".into(),
        idempotency_key: format!("{saga}:charge-payment:{n}"),
        data: json!({ "n": n }),
        created_at: Utc::now()
            .duration_trunc(Duration::microseconds(1))
            .unwrap(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        publish_attempts: 0,
    }
}

async fn scalar(store: &PgEventStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

const UNPUBLISHED: &str = "SELECT count(*) FROM commands WHERE sent_at IS NULL";

#[tokio::test]
async fn commands_kept_on_events_are_published_below_the_watermark_and_recovered_above_it() {
    let store = store().await;
    let epoch = store.open_relay("node-a").await.unwrap();
    let base = epoch << 40;
    let mut sent = Vec::new();
    for n in 0..3 {
        let id = saga();
        let mut s = step(id, 0, 1, Some(&format!("kept-{n}")));
        s.outbox = vec![command(id, n as u32)];
        s.relay_pos = Some(base + n);
        let outcome = store.commit(Arc::new(s.clone())).await.unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
        sent.push(s.outbox.remove(0));
    }
    assert_eq!(scalar(&store, "SELECT count(*) FROM outbox").await, 0);
    assert_eq!(scalar(&store, UNPUBLISHED).await, 3);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.outbox_unsent, 3, "counted where they are kept");
    assert_eq!(backlog.oldest_unsent_at, Some(sent[0].created_at));
    let far = Utc::now() + Duration::days(1);
    assert!(
        store
            .unsent(far, Duration::zero(), 10, ALL)
            .await
            .unwrap()
            .is_empty(),
        "a live relay's commands are not the sweep's"
    );

    // The watermark passes the first: it is published, the others are not.
    store
        .relay_published(epoch, "node-a", base + 1)
        .await
        .unwrap();
    assert_eq!(scalar(&store, UNPUBLISHED).await, 2);
    assert_eq!(store.backlog().await.unwrap().outbox_unsent, 2);
    let first = store
        .command_for(sent[0].saga_id, "charge-payment", 0)
        .await
        .unwrap()
        .expect("listed");
    assert_eq!(first.message_id, sent[0].message_id);
    assert!(first.sent_at.is_some());
    let (listed, _) = store.saga_messages(sent[1].saga_id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sent_at, None);
    // A watermark never goes back.
    store.relay_published(epoch, "node-a", base).await.unwrap();
    assert_eq!(scalar(&store, UNPUBLISHED).await, 2);

    // Another node's relay, seen just now, is left alone; this node's earlier
    // run is taken over at once: what it had not published goes to the outbox.
    let other = store.open_relay("node-b").await.unwrap();
    let restarted = store.open_relay("node-a").await.unwrap();
    let minute = std::time::Duration::from_secs(60);
    assert_eq!(
        store
            .recover_relays(restarted, "node-a", minute)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .recover_relays(restarted, "node-a", minute)
            .await
            .unwrap(),
        0
    );
    let unsent = store.unsent(far, Duration::zero(), 10, ALL).await.unwrap();
    assert_eq!(unsent, sent[1..], "read back whole, in order");
    assert_eq!(
        scalar(&store, UNPUBLISHED).await,
        2,
        "still listed once each"
    );
    assert_eq!(
        store.backlog().await.unwrap().outbox_unsent,
        2,
        "and counted once"
    );
    assert_eq!(scalar(&store, "SELECT count(*) FROM commands").await, 3);
    store
        .mark_sent(&[sent[1].message_id, sent[2].message_id])
        .await
        .unwrap();
    assert_eq!(scalar(&store, UNPUBLISHED).await, 0);

    // A relay not seen for longer than `dead_after` is gone too.
    let id = saga();
    let mut s = step(id, 0, 1, Some("other"));
    s.outbox = vec![command(id, 7)];
    s.relay_pos = Some(other << 40);
    store.commit(Arc::new(s.clone())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let gone = std::time::Duration::from_millis(10);
    assert_eq!(
        store
            .recover_relays(restarted, "node-a", gone)
            .await
            .unwrap(),
        1
    );
    let relays = scalar(&store, "SELECT count(*) FROM relays").await;
    assert_eq!(relays, 1, "only the live relay is left");
    let unsent = store.unsent(far, Duration::zero(), 10, ALL).await.unwrap();
    assert_eq!(unsent, s.outbox);
    store.mark_sent(&[s.outbox[0].message_id]).await.unwrap();

    // A first failure gives a kept command its outbox row, with the attempt
    // counted; a commit whose outcome was unknown is recovered if written.
    let id = saga();
    let mut s = step(id, 0, 1, Some("failing"));
    s.outbox = vec![command(id, 1)];
    let position = (restarted << 40) + 5;
    s.relay_pos = Some(position);
    store.commit(Arc::new(s.clone())).await.unwrap();
    let retry_at = Utc::now() + Duration::seconds(30);
    store
        .publish_failed(&[PublishFailure::Retry {
            message: s.outbox[0].clone(),
            error: "broker down".into(),
            at: retry_at,
        }])
        .await
        .unwrap();
    let due = store
        .unsent(retry_at, Duration::zero(), 10, ALL)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].publish_attempts, 1);
    assert_eq!(due[0].message_id, s.outbox[0].message_id);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(
        backlog.outbox_unsent, 1,
        "in the outbox and above the watermark: once"
    );
    store
        .recover_positions(&[position, position + 1])
        .await
        .unwrap();
    let rows = scalar(&store, "SELECT count(*) FROM outbox").await;
    assert_eq!(
        rows, 4,
        "the failed one is there once; position + 1 was never written"
    );
}

#[tokio::test]
async fn a_kept_command_leaves_out_what_its_event_holds_and_is_read_back_whole() {
    let store = store().await;
    let epoch = store.open_relay("node-a").await.unwrap();
    let id = saga();
    let at = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    let mut s = step(id, 0, 1, Some("kept-shape"));
    s.at = at;
    s.events[0].at = at;
    // As a step decides it: its key is `<saga>:<step>`, its time the step's.
    let usual = OutboxMessage {
        idempotency_key: format!("{id}:charge-payment"),
        created_at: at,
        ..command(id, 1)
    };
    // Neither, so both are kept.
    let other = OutboxMessage {
        traceparent: None,
        ..command(id, 2)
    };
    s.outbox = vec![usual.clone(), other.clone()];
    s.relay_pos = Some(epoch << 40);
    store.commit(Arc::new(s)).await.unwrap();

    let kept: serde_json::Value = sqlx::query_scalar(
        "SELECT commands FROM saga_events WHERE saga_id = $1 AND commands IS NOT NULL",
    )
    .bind(id.as_uuid())
    .fetch_one(store.pool())
    .await
    .unwrap();
    let keys = |n: usize| -> Vec<&str> {
        let mut keys: Vec<&str> = kept[n]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        keys
    };
    let always = [
        "attempt",
        "command_type",
        "data",
        "message_id",
        "participant",
        "step",
    ];
    let mut usual_keys = always.to_vec();
    usual_keys.push("traceparent");
    usual_keys.sort_unstable();
    assert_eq!(keys(0), usual_keys);
    let mut other_keys = always.to_vec();
    other_keys.extend(["created_at", "idempotency_key"]);
    other_keys.sort_unstable();
    assert_eq!(keys(1), other_keys);

    // An event written before kept every field of its commands.
    let old = command(id, 3);
    sqlx::query(
        "INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at, commands, relay_pos) \
         VALUES ($1, 2, 'Tested', '{}', now(), $2, $3)",
    )
    .bind(id.as_uuid())
    .bind(json!([old]))
    .bind(((epoch << 40) + 1) as i64)
    .execute(store.pool())
    .await
    .unwrap();

    let listed: Vec<(Uuid, String, String, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT message_id, saga_type, idempotency_key, created_at FROM commands \
         WHERE saga_id = $1 ORDER BY message_id",
    )
    .bind(id.as_uuid())
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected: Vec<_> = [&usual, &other, &old]
        .iter()
        .map(|c| {
            (
                c.message_id,
                c.saga_type.clone(),
                c.idempotency_key.clone(),
                c.created_at,
            )
        })
        .collect();
    assert_eq!(listed, expected, "the operators' view fills them in");
    assert_eq!(
        store.backlog().await.unwrap().oldest_unsent_at,
        Some(usual.created_at.min(other.created_at).min(old.created_at))
    );

    // Taken over, the relay's commands go to the outbox whole, in either shape.
    let restarted = store.open_relay("node-a").await.unwrap();
    let minute = std::time::Duration::from_secs(60);
    let copied = store
        .recover_relays(restarted, "node-a", minute)
        .await
        .unwrap();
    assert_eq!(copied, 3);
    let far = Utc::now() + Duration::days(1);
    let unsent = store.unsent(far, Duration::zero(), 10, ALL).await.unwrap();
    assert_eq!(unsent, [usual, other, old]);
}

/// Where the test holds a step back.
enum Hold {
    /// At its event: the test inserts the same event first, so the step's
    /// statement has taken its relay's row when it stops.
    Event,
    /// At its table, before the statement does anything: it holds no relay
    /// row yet, and only its running statement tells of it.
    Table,
}

/// A step of saga `id` (at version 1) with one command at `position`, and a
/// transaction of the test's (`blocker`) that holds it back where `hold`
/// says. Rolling `blocker` back lets it commit.
async fn step_in_flight(
    store: &Arc<PgEventStore>,
    position: u64,
    hold: Hold,
) -> (
    tokio::task::JoinHandle<Result<CommitOutcome, StoreError>>,
    sqlx::Transaction<'static, sqlx::Postgres>,
    OutboxMessage,
) {
    let id = saga();
    let key = id.to_string();
    store
        .commit(Arc::new(step(id, 0, 1, Some(&key))))
        .await
        .unwrap();
    if let Hold::Table = hold {
        // sqlx prepares a statement the first time a connection runs it, in a
        // round trip of its own, and the table lock holds back that prepare:
        // once it is let go the connection is idle until the statement is
        // executed, which a step whose connection broke never is. So the
        // step's statement is prepared first (on the connection that writes
        // the step, see the caller), and the lock holds back its execution.
        let other = saga();
        let key = other.to_string();
        store
            .commit(Arc::new(step(other, 0, 1, Some(&key))))
            .await
            .unwrap();
        store
            .commit(Arc::new(step(other, 1, 1, None)))
            .await
            .unwrap();
    }
    let mut blocker = store.pool().begin().await.unwrap();
    let held = match hold {
        Hold::Event => sqlx::query(
            "INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at) \
             VALUES ($1, 2, 'Blocking', '{}', now())",
        )
        .bind(id.as_uuid()),
        Hold::Table => sqlx::query("LOCK TABLE sagas IN SHARE MODE"),
    };
    held.execute(&mut *blocker).await.unwrap();
    let mut s = step(id, 1, 1, None);
    s.outbox = vec![command(id, 1)];
    s.relay_pos = Some(position);
    let sent = s.outbox[0].clone();
    let committing = tokio::spawn({
        let store = store.clone();
        async move { store.commit(Arc::new(s)).await }
    });
    // Until the step waits on the test, holding its relay's row if it is
    // held at its event.
    let holding_row = "SELECT count(*) FROM pg_locks \
                       WHERE relation = 'relays'::regclass AND mode = 'RowShareLock' AND granted";
    match hold {
        Hold::Event => wait_until(store, &[holding_row, BLOCKED]).await,
        Hold::Table => wait_until(store, &[BLOCKED]).await,
    }
    (committing, blocker, sent)
}

/// Sessions of this database waiting for a lock.
const BLOCKED: &str = "SELECT count(*) FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";

/// Waits (up to 5 s) until each count is above 0; the step must be waiting.
async fn wait_until(store: &PgEventStore, counts: &[&str]) {
    for _ in 0..500 {
        let mut all = true;
        for sql in counts {
            all &= scalar(store, sql).await > 0;
        }
        if all {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(scalar(store, BLOCKED).await > 0, "the step waits");
}

/// Runs the lookup of `position` while `blocker` holds the step back: it must
/// wait, and find the step's command once the step has committed.
async fn lookup_waits_for(
    store: &Arc<PgEventStore>,
    position: u64,
    committing: tokio::task::JoinHandle<Result<CommitOutcome, StoreError>>,
    blocker: sqlx::Transaction<'static, sqlx::Postgres>,
    sent: &OutboxMessage,
) {
    let lookup = tokio::spawn({
        let store = store.clone();
        async move { store.recover_positions(&[position]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!lookup.is_finished(), "the lookup waits for the step");
    blocker.rollback().await.unwrap();

    assert_eq!(committing.await.unwrap().unwrap(), CommitOutcome::Committed);
    lookup.await.unwrap().unwrap();
    assert!(outbox_has(store, sent).await, "found once written");
}

async fn outbox_has(store: &PgEventStore, message: &OutboxMessage) -> bool {
    let sql = format!(
        "SELECT count(*) FROM outbox WHERE message_id = '{}'",
        message.message_id
    );
    scalar(store, &sql).await == 1
}

#[tokio::test]
async fn a_takeover_waits_for_the_steps_its_relay_is_committing() {
    let store = Arc::new(store().await);
    let epoch = store.open_relay("node-a").await.unwrap();
    let (committing, blocker, sent) = step_in_flight(&store, epoch << 40, Hold::Event).await;

    // node-a restarts while its step is still being committed.
    let restarted = store.open_relay("node-a").await.unwrap();
    let takeover = tokio::spawn({
        let store = store.clone();
        async move {
            let minute = std::time::Duration::from_secs(60);
            store.recover_relays(restarted, "node-a", minute).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!takeover.is_finished(), "the takeover waits for the step");
    blocker.rollback().await.unwrap();

    assert_eq!(committing.await.unwrap().unwrap(), CommitOutcome::Committed);
    assert_eq!(takeover.await.unwrap().unwrap(), 1, "its command is copied");
    assert!(outbox_has(&store, &sent).await);

    // A step of the relay taken over writes nothing, until the relay records
    // itself anew (as its next watermark does).
    let id = saga();
    let key = id.to_string();
    let mut s = step(id, 0, 1, Some(&key));
    s.outbox = vec![command(id, 1)];
    s.relay_pos = Some((epoch << 40) + 1);
    let late = store.commit(Arc::new(s.clone())).await;
    assert!(matches!(late, Err(StoreError::RelayGone)), "{late:?}");
    assert!(store.load(id).await.unwrap().is_none(), "nothing written");
    store
        .relay_published(epoch, "node-a", (epoch << 40) + 1)
        .await
        .unwrap();
    let again = store.commit(Arc::new(s)).await.unwrap();
    assert_eq!(again, CommitOutcome::Committed);
}

#[tokio::test]
async fn an_unsure_position_is_looked_up_once_its_commit_is_done() {
    let store = Arc::new(store().await);
    let epoch = store.open_relay("node-a").await.unwrap();
    let position = (epoch << 40) + 3;
    let (committing, blocker, sent) = step_in_flight(&store, position, Hold::Event).await;

    lookup_waits_for(&store, position, committing, blocker, &sent).await;
}

#[tokio::test]
async fn steps_in_a_batch_whose_relay_was_taken_over_write_nothing() {
    // One committer connection, so that the steps queue into one batch.
    let store = store_with(GroupCommit {
        concurrency: 1,
        ..GroupCommit::default()
    })
    .await;
    let epoch = store.open_relay("node-a").await.unwrap();
    let restarted = store.open_relay("node-a").await.unwrap();
    let minute = std::time::Duration::from_secs(60);
    store
        .recover_relays(restarted, "node-a", minute)
        .await
        .unwrap();
    let steps: Vec<StepCommit> = (0..4)
        .map(|n| {
            let id = saga();
            let mut s = step(id, 0, 1, Some(&id.to_string()));
            if n % 2 == 0 {
                s.outbox = vec![command(id, 1)];
                s.relay_pos = Some((epoch << 40) + n);
            }
            s
        })
        .collect();
    let outcomes =
        futures_util::future::join_all(steps.iter().map(|s| store.commit(Arc::new(s.clone()))))
            .await;
    let outcomes: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Ok(o) => format!("{o:?}"),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        ["RelayGone", "Committed", "RelayGone", "Committed"]
    );
    assert_eq!(scalar(&store, "SELECT count(*) FROM sagas").await, 2);
}

#[tokio::test]
async fn an_unsure_position_waits_for_a_step_statement_not_yet_at_its_relay_row() {
    // Steps one at a time find the committer idle and are all written on its
    // one connection for steps alone, so the statement `step_in_flight`
    // prepares is prepared where the step runs.
    let store = Arc::new(
        store_with(GroupCommit {
            concurrency: 1,
            ..GroupCommit::default()
        })
        .await,
    );
    let epoch = store.open_relay("node-a").await.unwrap();
    let position = (epoch << 40) + 1;
    let (committing, blocker, sent) = step_in_flight(&store, position, Hold::Table).await;
    lookup_waits_for(&store, position, committing, blocker, &sent).await;
}

#[tokio::test]
async fn timers_come_due_by_their_own_deadline_within_a_ten_second_slot_in_deadline_order() {
    let store = store().await;
    // A slot boundary a minute ago, and four timers around the next one.
    let base = Utc::now().duration_trunc(Duration::seconds(10)).unwrap() - Duration::seconds(60);
    let mut ids = Vec::new();
    for (n, offset_ms) in [7_000, 2_000, 9_999, 10_000].into_iter().enumerate() {
        let id = saga();
        let mut first = step(id, 0, 1, Some(&format!("slot-{n}")));
        first.view.wake_at = Some(base + Duration::milliseconds(offset_ms));
        store.commit(Arc::new(first)).await.unwrap();
        ids.push(id);
    }
    let due = |at_ms: i64, limit: i64| {
        let store = &store;
        async move {
            let at = base + Duration::milliseconds(at_ms);
            let due = store.due(at, limit, ALL).await.unwrap();
            due.iter().map(|t| t.saga_id).collect::<Vec<_>>()
        }
    };
    // Half-way through the first slot: only what is due, earliest first.
    assert_eq!(due(8_000, 10).await, [ids[1], ids[0]]);
    assert_eq!(due(9_999, 10).await, [ids[1], ids[0], ids[2]]);
    assert_eq!(due(10_000, 10).await, [ids[1], ids[0], ids[2], ids[3]]);
    assert_eq!(due(10_000, 2).await, [ids[1], ids[0]]);
    assert!(due(1_999, 10).await.is_empty());

    // A step that moves a deadline within its slot leaves the slot as it was
    // (so the update need not touch the index); a move past it changes it.
    let slot = |id: SagaId| {
        sqlx::query_scalar::<_, chrono::DateTime<Utc>>("SELECT wake_slot FROM sagas WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_one(store.pool())
    };
    assert_eq!(slot(ids[0]).await.unwrap(), base);
    let mut next = step(ids[0], 1, 1, None);
    next.view.wake_at = Some(base + Duration::milliseconds(9_000));
    store.commit(Arc::new(next)).await.unwrap();
    assert_eq!(slot(ids[0]).await.unwrap(), base);
    let mut later = step(ids[0], 2, 1, None);
    later.view.wake_at = Some(base + Duration::milliseconds(25_000));
    store.commit(Arc::new(later)).await.unwrap();
    assert_eq!(slot(ids[0]).await.unwrap(), base + Duration::seconds(20));
    assert_eq!(due(10_000, 10).await, [ids[1], ids[2], ids[3]]);
    assert_eq!(due(25_000, 10).await, [ids[1], ids[2], ids[3], ids[0]]);
}

/// An operator's search by business key alone (the console's and the CLI's)
/// probes the unique index instead of reading all of it.
#[tokio::test]
async fn a_search_by_business_key_alone_reads_a_few_pages_of_a_large_store() {
    let store = store().await;
    sqlx::query(
        "INSERT INTO sagas (id, saga_type, business_key, status, version, input, created_at, updated_at) \
         SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN 'order' ELSE 'refund' END, \
                'key-' || g, 'completed', 4, '{}', now(), now() \
         FROM generate_series(1, 20000) AS g",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE sagas")
        .execute(store.pool())
        .await
        .unwrap();
    let found = store
        .search(&SagaFilter {
            business_key: Some("key-12345".into()),
            limit: 51,
            ..SagaFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].saga_type, "refund");

    // The search's statement for a business key alone; every page it touched.
    let plan: serde_json::Value = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM sagas WHERE true \
         AND business_key = 'key-12345' ORDER BY created_at DESC, id DESC LIMIT 51",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let top = &plan[0]["Plan"];
    let pages =
        top["Shared Hit Blocks"].as_i64().unwrap() + top["Shared Read Blocks"].as_i64().unwrap();
    // Reading the whole index of 20,000 keys touches over a hundred pages.
    assert!(pages <= 10, "{pages} pages for one key: {plan}");
}
