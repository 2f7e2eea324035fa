//! Deadlines and retry budgets, driven by the durable timers.

use crate::helpers::{order, spawn_app_with, TestApp};

async fn fast_timers_app(compensation_attempts: u32) -> TestApp {
    spawn_app_with(|s| {
        s.saga.step_timeout_ms = 300;
        s.saga.step_max_attempts = 2;
        s.saga.compensation_max_attempts = compensation_attempts;
        s.saga.backoff_initial_ms = 50;
        s.saga.backoff_max_ms = 50;
        s.orchestrator.timer_interval_ms = 20;
    })
    .await
}

#[actix_web::test]
async fn an_unanswered_step_is_retried_then_compensated_including_its_own_undo() {
    let app = fast_timers_app(3).await;
    // Inventory never answers for a HANG- SKU.
    let id = app.start_order("t-1", order("o", "c", "HANG-1", 100)).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated");
    assert_eq!(
        app.event_types(&id).await,
        [
            "SagaStarted",
            "StepFailed",
            "StepRetried",
            "StepFailed",
            "InventoryReleased",
            "OrderCancelled"
        ]
    );
    let events = app.events(&id).await;
    assert_eq!(events[1]["data"]["cause"], "timed_out");
    assert_eq!(events[1]["data"]["then"]["action"], "retry");
    assert_eq!(events[2]["data"]["attempt"], 2);
    assert_eq!(events[3]["data"]["then"]["action"], "compensate");
    assert_eq!(
        app.commanded_steps(&id).await,
        [
            "reserve-inventory",
            "reserve-inventory",
            "release-inventory",
            "cancel-order"
        ]
    );
    let keys = app
        .count(&format!(
            "SELECT count(DISTINCT idempotency_key) FROM commands WHERE saga_id = '{id}' AND step = 'reserve-inventory'"
        ))
        .await;
    assert_eq!(keys, 1, "both attempts carry one idempotency key");
    // Two deadlines and one back-off fired; each firing's lag is measured.
    let fired = app.metric("sagaplane_timers_fired_total").await;
    assert!(fired >= 3.0, "{fired}");
    assert_eq!(app.metric("sagaplane_timer_lag_seconds_count").await, fired);
    let lag = app.metric("sagaplane_timer_lag_seconds_sum").await / fired;
    assert!(lag < 1.0, "mean timer lag {lag} s with a 20 ms poll");
}

#[actix_web::test]
async fn a_compensation_that_keeps_failing_suspends_the_saga() {
    let app = fast_timers_app(2).await;
    // Declined payment (amount above the limit), then the release of a STUCK- SKU fails.
    let id = app
        .start_order("t-2", order("o", "c", "STUCK-1", 2_000_000))
        .await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "suspended");
    assert_eq!(saga["current_step"], "release-inventory");
    assert_eq!(saga["attempt"], 2);
    assert_eq!(saga["next_wake_at"], serde_json::Value::Null);
    assert!(
        saga["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot release STUCK-1"),
        "{saga}"
    );
    let last = app.events(&id).await.pop().unwrap();
    assert_eq!(last["data"]["then"]["action"], "suspend");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM commands WHERE saga_id = '{id}' AND step = 'cancel-order'"
        ))
        .await,
        0,
        "a suspended saga sends nothing more"
    );
}

#[actix_web::test]
async fn a_saga_deadline_shorter_than_the_retries_ends_it_earlier() {
    let app = spawn_app_with(|s| {
        s.saga.step_timeout_ms = 200;
        s.saga.step_max_attempts = 10;
        s.saga.backoff_initial_ms = 50;
        s.saga.backoff_max_ms = 50;
        s.saga.deadline_ms = 700;
        s.orchestrator.timer_interval_ms = 20;
    })
    .await;
    let id = app.start_order("d-1", order("o", "c", "HANG-1", 100)).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated");
    let events = app.events(&id).await;
    let failed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "StepFailed")
        .collect();
    let last = failed.last().unwrap();
    assert_eq!(last["data"]["cause"], "deadline_exceeded", "{last}");
    assert_eq!(last["data"]["then"]["action"], "compensate");
    // Ten attempts of 200 ms did not fit in 700 ms: it stopped after a few.
    let attempts = app
        .commanded_steps(&id)
        .await
        .iter()
        .filter(|s| *s == "reserve-inventory")
        .count();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
    assert_eq!(
        &app.commanded_steps(&id).await[attempts..],
        ["release-inventory", "cancel-order"]
    );
}
