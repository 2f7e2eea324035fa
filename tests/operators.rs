//! Operators: what a saga waits for, interventions (409, If-Match, dry run),
//! time travel, search and stats.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, order, spawn_app, spawn_app_with, TestApp};

fn why(reason: &str) -> Value {
    json!({ "reason": reason, "operator": "ada" })
}

/// A saga whose inventory never answers: it waits on reserve-inventory.
async fn hanging(app: &TestApp, key: &str) -> String {
    app.start_order(key, order(key, "c-1", "HANG-1", 500)).await
}

/// A saga whose release keeps failing, suspended after a budget of two.
async fn suspended_app() -> (TestApp, String) {
    let app = spawn_app_with(|s| {
        s.saga.compensation_max_attempts = 2;
        s.saga.backoff_initial_ms = 10;
        s.saga.backoff_max_ms = 20;
    })
    .await;
    let id = app
        .start_order("stuck-1", order("o-stuck", "c-1", "STUCK-1", 2_000_000))
        .await;
    assert_eq!(app.settled(&id).await["status"], "suspended");
    (app, id)
}

fn strip_times(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut data = e["data"].clone();
            data.as_object_mut().map(|d| d.remove("at"));
            json!({ "type": e["type"], "data": data })
        })
        .collect()
}

#[actix_web::test]
async fn a_waiting_saga_says_what_it_waits_for() {
    let app = spawn_app().await;
    let id = hanging(&app, "wait-1").await;
    let command_sent = app
        .eventually(Duration::from_secs(5), || async {
            app.saga(&id).await["waiting_for"]["command_sent_at"].is_string()
        })
        .await;
    assert!(command_sent, "the command was handed to its transport");
    let response = app.get(&format!("/v1/sagas/{id}")).await;
    assert_eq!(response.headers()["etag"], "\"1\"");
    let saga: Value = response.json().await.unwrap();
    let w = &saga["waiting_for"];
    assert_eq!(w["step"], "reserve-inventory");
    assert_eq!(w["participant"], "inventory");
    assert_eq!(
        (w["attempt"].as_u64(), w["max_attempts"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(w["waiting_on"], "reply");
    assert_eq!(w["fires_at"], saga["next_wake_at"]);
    let command_id: String = sqlx::query_scalar(
        "SELECT message_id::text FROM commands WHERE saga_id = $1::uuid AND step = 'reserve-inventory'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(w["command_id"], command_id.as_str());
    assert_eq!(
        saga["allowed_actions"],
        json!(["retry", "skip", "compensate", "cancel"])
    );
    assert_eq!(saga["progress"]["steps_done"], json!([]));
}

#[actix_web::test]
async fn an_action_that_does_not_fit_is_refused_clearly() {
    let app = spawn_app().await;
    let done = app
        .start_order("done-1", order("o-1", "c-1", "SKU-1", 500))
        .await;
    assert_eq!(app.settled(&done).await["status"], "completed");
    let body = assert_problem(
        app.act(&done, "retry", why("again"), None, false).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(body["saga_status"], "completed");
    assert_eq!(body["allowed_actions"], json!([]));

    let id = hanging(&app, "fit-1").await;
    let body = assert_problem(
        app.act(&id, "resume", why("go"), None, false).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(body["saga_status"], "running");
    assert_eq!(
        body["allowed_actions"],
        json!(["retry", "skip", "compensate", "cancel"])
    );
    assert!(
        body["detail"].as_str().unwrap().contains("resume"),
        "{body}"
    );
    assert_problem(
        app.act(&id, "skip", why("no result"), None, false).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let body = assert_problem(
        app.act(&id, "cancel", json!({ "reason": " " }), None, false)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "reason");
    assert_problem(
        app.act(&id, "cancel", json!({}), None, false).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_problem(
        app.act(&id, "explode", why("x"), None, false).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let nobody = uuid::Uuid::now_v7();
    assert_problem(
        app.act(&nobody.to_string(), "cancel", why("x"), None, false)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.saga(&id).await["version"], 1, "nothing was appended");
}

#[actix_web::test]
async fn skip_with_an_assumed_success_continues_the_saga() {
    let app = spawn_app().await;
    let id = hanging(&app, "skip-1").await;
    let response = app
        .act(
            &id,
            "skip",
            json!({ "reason": "reserved by hand", "assume": "succeeded", "operator": "ada" }),
            None,
            false,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["dry_run"], false);
    assert_eq!(result["events"][0]["type"], "OperatorIntervened");
    assert_eq!(result["commands"][0]["step"], "charge-payment");
    assert_eq!(app.settled(&id).await["status"], "completed");
    let audit = &app.events(&id).await[1];
    assert_eq!(audit["type"], "OperatorIntervened");
    assert_eq!(audit["data"]["operator"], "ada");
    assert_eq!(audit["data"]["reason"], "reserved by hand");
    assert_eq!(audit["data"]["action"]["action"], "skip");
}

#[actix_web::test]
async fn cancel_and_compensate_a_running_saga() {
    let app = spawn_app().await;
    let a = hanging(&app, "cancel-1").await;
    let r = app
        .act(&a, "cancel", why("customer called"), None, false)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.settled(&a).await["status"], "cancelled");
    assert_eq!(
        app.event_types(&a).await,
        ["SagaStarted", "OperatorIntervened", "SagaCancelled"]
    );

    let b = hanging(&app, "comp-1").await;
    let r = app.act(&b, "compensate", why("give up"), None, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let saga = app.settled(&b).await;
    assert_eq!(saga["status"], "compensated");
    // The reservation may have been made: it is released before the cancel.
    assert_eq!(
        app.commanded_steps(&b).await,
        ["reserve-inventory", "release-inventory", "cancel-order"]
    );
}

#[actix_web::test]
async fn retry_of_a_suspended_compensation_and_resume_after_the_fix() {
    let (app, id) = suspended_app().await;
    let saga = app.saga(&id).await;
    assert_eq!(saga["waiting_for"]["waiting_on"], "operator");
    assert_eq!(saga["waiting_for"]["step"], "release-inventory");
    assert_eq!(saga["waiting_for"]["fires_at"], Value::Null);
    assert!(saga["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot release"));
    // Retried while the fault is still there: suspended again.
    let r = app.act(&id, "retry", why("one more go"), None, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "suspended");
    assert_eq!(saga["attempt"], 3);
    // The inventory team fixes it; resume finishes the compensation.
    app.participants.repair();
    let r = app
        .act(&id, "resume", why("inventory fixed"), None, false)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.settled(&id).await["status"], "compensated");
    let types = app.event_types(&id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "OperatorIntervened").count(),
        2
    );
    assert_eq!(types.last().unwrap(), "OrderCancelled");
}

#[actix_web::test]
async fn if_match_lets_exactly_one_of_two_concurrent_actions_win() {
    let app = spawn_app().await;
    let id = hanging(&app, "race-1").await;
    let etag = app.get(&format!("/v1/sagas/{id}")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let (a, b) = tokio::join!(
        app.act(&id, "retry", why("first"), Some(&etag), false),
        app.act(&id, "retry", why("second"), Some(&etag), false),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    let loser = if a.status() == StatusCode::OK { b } else { a };
    let body = assert_problem(loser, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(body["current_version"], 3);
    assert_eq!(app.saga(&id).await["attempt"], 2, "one retry, not two");
    for stale in ["\"1\"", "W/\"3\"", "garbage"] {
        assert_problem(
            app.act(&id, "cancel", why("x"), Some(stale), false).await,
            StatusCode::PRECONDITION_FAILED,
        )
        .await;
    }
    let r = app.act(&id, "cancel", why("x"), Some("\"3\""), false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"5\"");
}

#[actix_web::test]
async fn a_dry_run_changes_nothing_and_predicts_the_real_action() {
    let app = spawn_app().await;
    let id = hanging(&app, "dry-1").await;
    let before = app.saga(&id).await;
    let response = app.act(&id, "compensate", why("try"), None, true).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("etag").is_none());
    let predicted: Value = response.json().await.unwrap();
    assert_eq!(predicted["dry_run"], true);
    assert_eq!(predicted["saga"], Value::Null);
    let after = app.saga(&id).await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["status"], "running");
    assert_eq!(app.events(&id).await.len(), 1);
    assert_eq!(app.commanded_steps(&id).await.len(), 1);

    let response = app.act(&id, "compensate", why("try"), None, false).await;
    let real: Value = response.json().await.unwrap();
    assert_eq!(real["version"], predicted["version"]);
    assert_eq!(real["status"], predicted["status"]);
    assert_eq!(
        strip_times(predicted["events"].as_array().unwrap()),
        strip_times(real["events"].as_array().unwrap())
    );
    let stored = app.events(&id).await;
    assert_eq!(
        strip_times(&stored[1..3]),
        strip_times(predicted["events"].as_array().unwrap())
    );
    let commands = |v: &Value| -> Vec<Value> {
        v["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["step"], c["attempt"], c["idempotency_key"], c["data"]]))
            .collect()
    };
    assert_eq!(commands(&predicted), commands(&real));
    assert_eq!(commands(&real).len(), 1);
}

#[actix_web::test]
async fn the_history_can_show_the_state_after_every_event() {
    let app = spawn_app().await;
    let id = app
        .start_order("tt-1", order("o-1", "c-1", "SKU-1", 5_000_000))
        .await;
    assert_eq!(app.settled(&id).await["status"], "compensated");
    let response = app
        .get(&format!("/v1/sagas/{id}/events?with_state=true"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let events: Vec<Value> = response.json().await.unwrap();
    let states: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["state"]["status"].as_str().unwrap(),
                e["state"]["current_step"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("running", "reserve-inventory"),
            ("running", "charge-payment"),
            ("compensating", "release-inventory"),
            ("compensating", "cancel-order"),
            ("compensated", "-"),
        ]
    );
    assert_eq!(
        events[1]["state"]["progress"]["steps_done"],
        json!(["reserve-inventory"])
    );
    assert!(app
        .events(&id)
        .await
        .iter()
        .all(|e| e.get("state").is_none()));
}

#[actix_web::test]
async fn search_filters_pages_and_counts() {
    let app = spawn_app().await;
    let mut completed = Vec::new();
    for i in 0..5 {
        let key = format!("s-ok-{i}");
        completed.push(
            app.start_order(&key, order(&key, "c-1", "SKU-1", 500))
                .await,
        );
    }
    let declined = app
        .start_order("s-no", order("s-no", "c-1", "SKU-1", 5_000_000))
        .await;
    let hung = hanging(&app, "s-hang").await;
    for id in completed.iter().chain([&declined]) {
        app.settled(id).await;
    }
    let page = |q: &str| {
        let app = &app;
        let q = q.to_owned();
        async move {
            let response = app.get(&format!("/v1/sagas?{q}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{q}");
            response.json::<Value>().await.unwrap()
        }
    };
    let ids = |p: &Value| -> Vec<String> {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first, all of them, in pages of two without repeats or gaps.
    let mut walked = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let p = page(&query).await;
        walked.extend(ids(&p));
        match p["next_cursor"].as_str() {
            Some(c) => query = format!("limit=2&cursor={c}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = completed.clone();
    expected.push(declined.clone());
    expected.push(hung.clone());
    expected.reverse();
    assert_eq!(walked, expected);

    assert_eq!(ids(&page("status=completed").await).len(), 5);
    assert_eq!(
        ids(&page("status=compensated,running").await),
        [hung.clone(), declined.clone()]
    );
    assert_eq!(
        ids(&page("business_key=s-no&saga_type=order").await),
        [declined.as_str()]
    );
    assert_eq!(ids(&page("saga_type=other").await).len(), 0);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let q = format!("created_from={}", urlencode(&future));
    assert_eq!(ids(&page(&q).await).len(), 0);
    let q = format!("created_to={}", urlencode(&future));
    assert_eq!(ids(&page(&q).await).len(), 7);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(ids(&page("stuck_for=1s").await), [hung.as_str()]);
    assert_eq!(ids(&page("stuck_for=1h").await).len(), 0);
    for bad in [
        "status=bogus",
        "limit=0",
        "limit=501",
        "cursor=nope",
        "stuck_for=soon",
    ] {
        assert_problem(
            app.get(&format!("/v1/sagas?{bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }

    let stats: Value = app.get("/v1/stats").await.json().await.unwrap();
    assert_eq!(
        stats["counts"],
        json!([
            {"saga_type": "order", "status": "compensated", "count": 1},
            {"saga_type": "order", "status": "completed", "count": 5},
            {"saga_type": "order", "status": "running", "count": 1},
        ])
    );
    assert_eq!(stats["suspended"], 0);
    assert_eq!(stats["oldest_unsettled"]["id"], hung.as_str());
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[actix_web::test]
async fn every_action_is_refused_where_it_does_not_apply() {
    let (app, suspended) = suspended_app().await;
    let done = app
        .start_order("done-2", order("o-2", "c-1", "SKU-1", 500))
        .await;
    assert_eq!(app.settled(&done).await["status"], "completed");
    let running = hanging(&app, "run-2").await;
    let skip = json!({ "reason": "x", "assume": "succeeded" });
    let cases = [
        (&done, "retry", why("x")),
        (&done, "skip", skip.clone()),
        (&done, "compensate", why("x")),
        (&done, "resume", why("x")),
        (&done, "cancel", why("x")),
        (&running, "resume", why("x")),
        (&suspended, "compensate", why("x")),
    ];
    for (id, action, body) in cases {
        let before = app.saga(id).await["version"].clone();
        let problem = assert_problem(
            app.act(id, action, body, None, false).await,
            StatusCode::CONFLICT,
        )
        .await;
        assert!(problem["allowed_actions"].is_array(), "{problem}");
        assert!(!problem["allowed_actions"]
            .as_array()
            .unwrap()
            .contains(&json!(action)));
        assert_eq!(
            app.saga(id).await["version"],
            before,
            "{action} changed nothing"
        );
    }
}

#[actix_web::test]
async fn racing_cancels_give_one_winner_and_only_412_or_409_to_the_others() {
    let (app, id) = suspended_app().await;
    let etag = app.get(&format!("/v1/sagas/{id}")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    for if_match in [Some(etag.as_str()), None] {
        let responses = futures_util::future::join_all(
            (0..20).map(|_| app.act(&id, "cancel", why("race"), if_match, false)),
        )
        .await;
        let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
        let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert!(won <= 1, "{statuses:?}");
        assert!(
            statuses.iter().all(|s| [
                StatusCode::OK,
                StatusCode::PRECONDITION_FAILED,
                StatusCode::CONFLICT
            ]
            .contains(s)),
            "{statuses:?}"
        );
    }
    assert_eq!(app.saga(&id).await["status"], "cancelled");
}
