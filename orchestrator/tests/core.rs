//! The core against the in-memory store on tokio's paused clock: timeouts,
//! retries, back-offs and leases play out in virtual time, so minutes of
//! deadlines take milliseconds and every duration can be asserted exactly.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::prelude::*;
use sagaplane_orchestrator::ports::SUSPENDED_BY_SUPERVISOR;
use sagaplane_orchestrator::testing::{Fragile, RecordingTransport};
use sagaplane_orchestrator::{
    ActorError, Inbound, MemoryStore, Orchestrator, OrchestratorConfig, SharedClock, StartOutcome,
    TokioClock,
};
use sagaplane_sagas::Catalog;
use sagaplane_sagas::{Outcome, Policy, Reply, RetryPolicy, SagaId};
use serde_json::json;

struct Core {
    clock: SharedClock,
    store: MemoryStore,
    transport: RecordingTransport,
    orchestrator: Orchestrator,
}

/// An orchestrator on the memory store; call after `tokio::time::pause()`.
fn core(config: OrchestratorConfig) -> Core {
    let clock: SharedClock = Arc::new(TokioClock::new());
    let store = MemoryStore::new(clock.clone());
    let transport = RecordingTransport::new(clock.clone());
    let orchestrator =
        Orchestrator::builder(Arc::new(store.clone()), Arc::new(transport.clone()), config)
            .clock(clock.clone())
            .definitions(&Catalog::shipped())
            .register::<Fragile>("fragile", Arc::new(()))
            .start();
    Core {
        clock,
        store,
        transport,
        orchestrator,
    }
}

fn retry(max_attempts: u32, initial_ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_initial_ms: initial_ms,
        backoff_max_ms: 60_000,
        jitter: true,
    }
}

fn order() -> serde_json::Value {
    json!({"order_id": "o-1", "customer_id": "c-1", "items": [{"sku": "BOOK-1", "qty": 1}],
           "amount_cents": 100, "currency": "EUR"})
}

async fn start_order(core: &Core, key: &str) -> SagaId {
    match core
        .orchestrator
        .start("order", key, order(), None, None)
        .await
    {
        Ok(StartOutcome::Created(saga)) => saga.id,
        other => panic!("not started: {other:?}"),
    }
}

fn reply(saga: SagaId, step: &str, attempt: u32, at: DateTime<Utc>) -> Inbound {
    Inbound {
        channel: "test".into(),
        message_id: format!("{saga}:{step}:{attempt}"),
        saga_id: saga,
        reply: Reply {
            step: step.into(),
            attempt,
            outcome: Outcome::Succeeded,
            at,
            result: None,
        },
        raw: b"{}".to_vec(),
        traceparent: None,
    }
}

/// Lets virtual time run (in steps of 10 ms) until `done` holds, at most `limit`.
async fn run_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within {limit:?} of virtual time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(step, attempt)` of every command taken, in order.
fn sent(core: &Core) -> Vec<(String, u32)> {
    core.transport
        .taken()
        .into_iter()
        .map(|(_, m)| (m.step, m.attempt))
        .collect()
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

#[actix::test]
async fn an_unanswered_step_is_retried_after_each_timeout_then_compensated() {
    tokio::time::pause();
    let policy = Policy {
        step_timeout_ms: 5_000,
        forward: retry(3, 1_000),
        compensation: retry(3, 1_000),
        ..Policy::default()
    };
    let core = core(OrchestratorConfig {
        policy,
        ..OrchestratorConfig::default()
    });
    let id = start_order(&core, "k-timeouts").await;
    run_until(Duration::from_secs(120), || {
        sent(&core)
            .iter()
            .any(|(step, _)| step == "release-inventory")
    })
    .await;
    let taken = core.transport.taken();
    let steps = sent(&core);
    assert_eq!(
        steps,
        [
            ("reserve-inventory".to_owned(), 1),
            ("reserve-inventory".to_owned(), 2),
            ("reserve-inventory".to_owned(), 3),
            ("release-inventory".to_owned(), 1),
        ],
        "three attempts, then the timed-out step's own undo"
    );
    // Each next attempt waits for the timeout (5 s) and a back-off of 50–100 %
    // of 1 s, then 2 s; the timer service looks every 100 ms.
    let gaps: Vec<f64> = taken.windows(2).map(|w| seconds(w[0].0, w[1].0)).collect();
    assert!((5.5..=6.2).contains(&gaps[0]), "gap 1: {gaps:?}");
    assert!((6.0..=7.2).contains(&gaps[1]), "gap 2: {gaps:?}");
    // The last attempt's timeout starts compensation at once.
    assert!((5.0..=5.2).contains(&gaps[2]), "gap 3: {gaps:?}");
    let record = core.store.get(id).await.unwrap().unwrap();
    assert_eq!(record.status, "compensating");
    assert_eq!(record.current_step.as_deref(), Some("release-inventory"));

    let now = core.clock.now();
    core.orchestrator
        .receive(reply(id, "release-inventory", 1, now))
        .await
        .unwrap();
    run_until(Duration::from_secs(10), || {
        sent(&core).iter().any(|(step, _)| step == "cancel-order")
    })
    .await;
    core.orchestrator
        .receive(reply(id, "cancel-order", 1, core.clock.now()))
        .await
        .unwrap();
    let record = core.store.get(id).await.unwrap().unwrap();
    assert_eq!(record.status, "compensated");
    assert_eq!(record.wake_at, None, "a settled saga keeps no timer");
}

#[actix::test]
async fn a_saga_whose_actor_keeps_panicking_is_suspended_within_the_crash_window_only() {
    tokio::time::pause();
    let core = core(OrchestratorConfig {
        crash_limit: 3,
        crash_window: Duration::from_secs(60),
        ..OrchestratorConfig::default()
    });
    let start = |key: &'static str| {
        let orchestrator = core.orchestrator.clone();
        async move {
            match orchestrator
                .start("fragile", key, json!({}), None, None)
                .await
            {
                Ok(StartOutcome::Created(saga)) => saga.id,
                other => panic!("not started: {other:?}"),
            }
        }
    };
    let slow = start("slow").await;
    let fast = start("fast").await;
    let crash = |id: SagaId, n: u32| {
        let orchestrator = core.orchestrator.clone();
        let at = core.clock.now();
        async move {
            let mut message = reply(id, "wait", 1, at);
            message.message_id = format!("{id}:{n}");
            orchestrator.receive(message).await
        }
    };
    // Three panics a minute and more apart never make a crash loop …
    for n in 1..=3 {
        assert!(matches!(crash(slow, n).await, Err(ActorError::Panicked(_))));
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
    assert_eq!(
        core.store.get(slow).await.unwrap().unwrap().status,
        "running"
    );
    // … three within it do.
    assert!(matches!(crash(fast, 1).await, Err(ActorError::Panicked(_))));
    assert!(matches!(crash(fast, 2).await, Err(ActorError::Panicked(_))));
    assert!(matches!(
        crash(fast, 3).await,
        Err(ActorError::CrashLoop(_))
    ));
    let record = core.store.get(fast).await.unwrap().unwrap();
    assert_eq!(record.status, "suspended");
    assert!(record.last_error.unwrap().contains("panicked 3 times"));
    let events = core.store.events(fast).await.unwrap();
    assert_eq!(events.last().unwrap().event_type, SUSPENDED_BY_SUPERVISOR);
    // Suspended once: a fourth panic does not append again.
    let _ = crash(fast, 4).await;
    assert_eq!(core.store.events(fast).await.unwrap().len(), events.len());
}

#[actix::test]
async fn a_command_its_transport_refuses_is_retried_with_growing_back_off_then_dead_lettered() {
    tokio::time::pause();
    let core = core(OrchestratorConfig {
        publish: retry(4, 1_000),
        ..OrchestratorConfig::default()
    });
    core.transport.refuse(true);
    let id = start_order(&core, "k-backoff").await;
    run_until(Duration::from_secs(60), || {
        core.store.outbox().iter().any(|(_, _, dead)| *dead)
    })
    .await;
    let attempts = core.transport.attempts();
    assert_eq!(attempts.len(), 4, "the budget is four attempts");
    assert!(attempts
        .iter()
        .all(|(_, m, taken)| !taken && m.saga_id == id));
    // Back-off before attempts 2, 3, 4: 50–100 % of 1 s, 2 s, 4 s (plus the
    // bookkeeping write's turn, well under 50 ms in virtual time).
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| seconds(w[0].0, w[1].0))
        .collect();
    for (gap, base) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            (base * 0.5..=base + 0.05).contains(gap),
            "gaps {gaps:?}: {gap} is not within 50–100 % of {base} s"
        );
    }
    let letters = core.store.dead_letters(true, None, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("after 4 attempt(s)"));
    assert_eq!(letters[0].channel, "outbox:inventory");

    // Redriven, it goes out again once the transport takes it.
    core.transport.refuse(false);
    let (outcome, letter) = core
        .orchestrator
        .redrive(letters[0].id, "ops", "the broker is back")
        .await
        .unwrap();
    assert_eq!(outcome.as_str(), "requeued");
    assert!(letter.resolution.is_some());
    run_until(Duration::from_secs(5), || core.transport.taken().len() == 1).await;
    // Marked sent a moment later, with whatever else went out meanwhile.
    run_until(Duration::from_secs(1), || {
        core.store.outbox().iter().all(|(_, sent, _)| *sent)
    })
    .await;
}

#[actix::test]
async fn a_node_that_cannot_renew_its_leases_stops_firing_timers_until_it_can() {
    tokio::time::pause();
    let core = core(OrchestratorConfig {
        policy: Policy {
            step_timeout_ms: 5_000,
            forward: retry(3, 1_000),
            ..Policy::default()
        },
        lease_ttl: Duration::from_secs(3),
        ..OrchestratorConfig::default()
    });
    let id = start_order(&core, "k-leases").await;
    run_until(Duration::from_secs(1), || sent(&core).len() == 1).await;
    core.store.fail_leases(true);
    // The reply deadline passes at 5 s and the retry would go at 5.5–6 s, but
    // past two thirds of the lease (2 s) the node no longer acts as an owner.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(sent(&core).len(), 1, "no timer fired without a lease");
    let record = core.store.get(id).await.unwrap().unwrap();
    assert!(
        record.wake_at.unwrap() < core.clock.now(),
        "the deadline is overdue"
    );

    core.store.fail_leases(false);
    run_until(Duration::from_secs(5), || sent(&core).len() == 2).await;
    assert_eq!(sent(&core)[1], ("reserve-inventory".to_owned(), 2));
}

#[actix::test]
async fn a_reply_dated_by_a_wrong_clock_moves_no_deadline() {
    tokio::time::pause();
    let core = core(OrchestratorConfig {
        policy: Policy {
            step_timeout_ms: 5_000,
            ..Policy::default()
        },
        ..OrchestratorConfig::default()
    });
    for (key, skew) in [("k-slow", -3_600), ("k-fast", 3_600)] {
        let id = start_order(&core, key).await;
        let participant_time = core.clock.now() + chrono::Duration::seconds(skew);
        core.orchestrator
            .receive(reply(id, "reserve-inventory", 1, participant_time))
            .await
            .unwrap();
        let now = core.clock.now();
        let record = core.store.get(id).await.unwrap().unwrap();
        assert_eq!(record.current_step.as_deref(), Some("charge-payment"));
        assert_eq!(record.step_since, Some(now), "{key}: the step starts now");
        assert_eq!(
            record.wake_at,
            Some(now + chrono::Duration::seconds(5)),
            "{key}: the reply deadline runs from the orchestrator's clock"
        );
        // Nothing times out before the deadline.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let record = core.store.get(id).await.unwrap().unwrap();
        assert_eq!(record.attempt, Some(1), "{key}: not timed out early");
    }
}

/// Version 2 of the shipped order saga: a notification after the confirmation.
fn order_v2() -> sagaplane_sagas::Definition {
    let v1 = sagaplane_sagas::definition::SHIPPED[0].1;
    let v2 = v1
        .replacen("\nversion = 1\n", "\nversion = 2\n", 1)
        .replacen(
            "[final_compensation]",
            "[[steps]]\nname = \"notify-customer\"\nparticipant = \"order\"\n\
         command = \"order.order.notify.v1\"\n\n[final_compensation]",
            1,
        );
    sagaplane_sagas::Definition::from_toml("order.v2.toml", &v2).unwrap()
}

#[actix::test]
async fn a_node_reads_the_definitions_again_for_a_version_stored_after_it_started() {
    tokio::time::pause();
    // Node A started with version 1 only.
    let a = core(OrchestratorConfig::default());
    // Node B, started later on the same database, stores version 2 and runs
    // a saga under it.
    let v1 = sagaplane_sagas::Definition::shipped().remove(0);
    let offered = vec![
        ("order.v1.toml".into(), v1),
        ("order.v2.toml".into(), order_v2()),
    ];
    let catalog = sagaplane_orchestrator::load_catalog(&a.store, offered)
        .await
        .unwrap();
    let b = Orchestrator::builder(
        Arc::new(a.store.clone()),
        Arc::new(a.transport.clone()),
        OrchestratorConfig::default(),
    )
    .clock(a.clock.clone())
    .definitions(&catalog)
    .start();
    let id = match b.start("order", "v2-saga", order(), Some(2), None).await {
        Ok(StartOutcome::Created(saga)) => saga.id,
        other => panic!("not started: {other:?}"),
    };
    // Node A reads the saga (its history names version 2) and applies a reply.
    let state = a.orchestrator.inspect(id).await.unwrap().unwrap();
    assert_eq!(state.explanation.progress["definition"]["version"], 2);
    let now = a.clock.now();
    let handled = a
        .orchestrator
        .receive(reply(id, "reserve-inventory", 1, now))
        .await
        .unwrap();
    assert!(
        matches!(handled, sagaplane_orchestrator::Handled::Applied { .. }),
        "{handled:?}"
    );
}

#[actix::test]
async fn a_node_takes_in_a_saga_type_and_a_version_stored_after_it_started() {
    tokio::time::pause();
    let a = core(OrchestratorConfig::default());
    // Another node stores order version 2 and a new type, `refund`.
    let refund = sagaplane_sagas::definition::SHIPPED[1].1.replacen(
        "saga_type = \"return\"",
        "saga_type = \"refund\"",
        1,
    );
    let refund = sagaplane_sagas::Definition::from_toml("refund.v1.toml", &refund).unwrap();
    let v1 = sagaplane_sagas::Definition::shipped().remove(0);
    let offered = vec![
        ("order.v1.toml".into(), v1),
        ("order.v2.toml".into(), order_v2()),
        ("refund.v1.toml".into(), refund),
    ];
    sagaplane_orchestrator::load_catalog(&a.store, offered)
        .await
        .unwrap();
    assert!(a.orchestrator.catalog().get("refund").is_none());
    // This node starts a saga of the new type, and one naming version 2.
    let input = json!({"return_id": "r-1", "order_id": "o-1", "customer_id": "c-1",
                       "items": [{"sku": "BOOK-1", "qty": 1}], "amount_cents": 100,
                       "currency": "EUR"});
    let started = a
        .orchestrator
        .start("refund", "r-1", input, None, None)
        .await;
    assert!(
        matches!(started, Ok(StartOutcome::Created(_))),
        "{started:?}"
    );
    let started = a
        .orchestrator
        .start("order", "o-2", order(), Some(2), None)
        .await;
    assert!(
        matches!(started, Ok(StartOutcome::Created(_))),
        "{started:?}"
    );
    let catalog = a.orchestrator.catalog();
    assert_eq!(catalog.get("order").unwrap().newest().version, 2);
    assert!(a.orchestrator.saga_types().contains(&"refund".to_owned()));
}

#[actix::test]
async fn a_relay_taken_over_while_alive_records_itself_anew_and_its_steps_go_on() {
    tokio::time::pause();
    let core = core(OrchestratorConfig::default());
    let first = start_order(&core, "k-before").await;
    run_until(Duration::from_secs(5), || core.transport.taken().len() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Another node takes this one for gone (say, after a long database outage).
    let taken = core
        .store
        .recover_relays(0, "elsewhere", Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(taken, 0, "everything it committed was published");

    // The next step with a command finds its relay gone, writes nothing, and
    // is decided again once the relay has recorded itself anew.
    let second = start_order(&core, "k-after").await;
    run_until(Duration::from_secs(5), || core.transport.taken().len() == 2).await;
    let taken: Vec<SagaId> = core
        .transport
        .taken()
        .into_iter()
        .map(|(_, m)| m.saga_id)
        .collect();
    assert_eq!(taken, [first, second], "each command once");
    let events = core.orchestrator.events(second).await.unwrap();
    let started = events.iter().filter(|e| e.seq == 1).count();
    assert_eq!(started, 1, "started once: {events:?}");
}

#[actix::test]
async fn a_sweep_answered_after_its_rows_were_sent_publishes_none_of_them_again() {
    tokio::time::pause();
    let core = core(OrchestratorConfig {
        publish: retry(100, 50),
        outbox_sweep_interval: Duration::from_millis(100),
        ..OrchestratorConfig::default()
    });
    // A slow database: each sweep answers with what was unsent 250 ms ago,
    // so sweeps overlap, and most answer after the rows they found were sent.
    core.store.slow_sweeps(Duration::from_millis(250));
    core.transport.refuse(true);
    start_order(&core, "k-slow-1").await;
    start_order(&core, "k-slow-2").await;
    // Refused twice each: both are outbox rows the sweeps retry.
    run_until(Duration::from_secs(5), || {
        core.transport.attempts().len() >= 4
    })
    .await;

    core.transport.refuse(false);
    run_until(Duration::from_secs(10), || {
        core.store.outbox().iter().all(|(_, sent, _)| *sent)
    })
    .await;
    // Every sweep in flight now has answered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let taken: Vec<_> = core
        .transport
        .taken()
        .into_iter()
        .map(|(_, m)| m.message_id)
        .collect();
    assert_eq!(taken.len(), 2, "each command taken once: {taken:?}");
    assert_ne!(taken[0], taken[1]);
}
