//! The simulated participants' rules as configured: checked at start-up,
//! answering before the shipped ones, and the shipped ones left out.

use sagaplane_adapters::SimulatorRule;
use serde_json::json;

use crate::helpers::{fresh_database_url, order, spawn_app_with};

fn refuse_dollars() -> SimulatorRule {
    SimulatorRule {
        participant: "payment".into(),
        command: Some("order.payment.charge.v1".into()),
        field: Some("currency".into()),
        equals: Some(json!("USD")),
        answer: "refuse".into(),
        reason: Some("{value} is not accepted".into()),
        ..SimulatorRule::default()
    }
}

#[actix_web::test]
async fn a_rule_that_cannot_be_used_stops_the_start() {
    let mut settings = sagaplane_api::Settings {
        listen: "127.0.0.1:0".into(),
        ..sagaplane_api::Settings::default()
    };
    settings.database.url = Some(fresh_database_url());
    settings.simulator.rules = vec![
        refuse_dollars(),
        SimulatorRule {
            above: Some(json!("a lot")),
            equals: None,
            ..refuse_dollars()
        },
    ];
    let message = sagaplane_api::Application::build(settings)
        .await
        .err()
        .expect("the start is refused")
        .to_string();
    assert!(message.contains("simulator.rules[1]"), "{message}");
    assert!(message.contains("`above` must be a number"), "{message}");
}

#[actix_web::test]
async fn a_configured_rule_answers_before_the_shipped_ones() {
    let app = spawn_app_with(|s| s.simulator.rules.push(refuse_dollars())).await;
    let mut dollars = order("o-usd", "c-1", "SKU-1", 500);
    dollars["currency"] = json!("USD");
    let id = app.start_order("o-usd", dollars).await;
    let saga = app.settled(&id).await;
    assert_eq!(saga["status"], "compensated");
    let error = saga["last_error"].as_str().unwrap();
    assert!(error.contains("USD is not accepted"), "{error}");

    // The shipped rules still apply to what the configured one leaves.
    let id = app
        .start_order("o-oos", order("o-oos", "c-1", "OOS-1", 500))
        .await;
    assert_eq!(app.settled(&id).await["status"], "compensated");
}

#[actix_web::test]
async fn without_the_shipped_rules_every_command_succeeds() {
    let app = spawn_app_with(|s| s.simulator.default_rules = false).await;
    let id = app
        .start_order("o-1", order("NOCONFIRM-1", "HANG-1", "OOS-1", 5_000_000))
        .await;
    assert_eq!(app.settled(&id).await["status"], "completed");
}
