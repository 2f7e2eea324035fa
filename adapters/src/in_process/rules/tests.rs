//! The rules: what a rule matches and how it answers.

use chrono::Utc;
use sagaplane_sagas::SagaId;
use serde_json::json;
use uuid::Uuid;

use super::*;

fn command(participant: &str, command_type: &str, data: Value) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::new_v4(),
        saga_id: SagaId::from_uuid(Uuid::now_v7()),
        saga_type: "test".into(),
        step: "a-step".into(),
        attempt: 1,
        participant: participant.into(),
        command_type: command_type.into(),
        idempotency_key: "saga-1:a-step".into(),
        data,
        created_at: Utc::now(),
        traceparent: None,
        publish_attempts: 0,
    }
}

fn rules(configured: Vec<SimulatorRule>, default_rules: bool) -> Rules {
    Rules::new(&SimulatorSettings {
        rules: configured,
        default_rules,
        ..SimulatorSettings::default()
    })
    .expect("valid rules")
}

fn rule(answer: &str) -> SimulatorRule {
    SimulatorRule {
        participant: "p".into(),
        answer: answer.into(),
        ..SimulatorRule::default()
    }
}

fn with(field: &str, matcher: &str, value: Value, answer: &str) -> SimulatorRule {
    let mut r = rule(answer);
    r.field = Some(field.into());
    match matcher {
        "starts_with" => r.starts_with = Some(value),
        "equals" => r.equals = Some(value),
        "above" => r.above = Some(value),
        "below" => r.below = Some(value),
        other => panic!("no matcher {other}"),
    }
    r
}

fn succeeded() -> Option<Answer> {
    Some(Answer {
        outcome: Outcome::Succeeded,
        result: None,
    })
}

fn refused(reason: &str) -> Option<Answer> {
    Some(Answer {
        outcome: Outcome::Refused {
            reason: reason.into(),
        },
        result: None,
    })
}

fn failed(reason: &str) -> Option<Answer> {
    Some(Answer {
        outcome: Outcome::Failed {
            reason: reason.into(),
        },
        result: None,
    })
}

fn result(result: Value) -> Option<Answer> {
    Some(Answer {
        outcome: Outcome::Succeeded,
        result: Some(result),
    })
}

#[test]
fn configured_rules_come_first_and_the_shipped_ones_can_be_left_out() {
    let mut oos_ok = with("items[*].sku", "starts_with", json!("OOS-"), "succeed");
    oos_ok.participant = "inventory".into();
    let oos = command(
        "inventory",
        "order.inventory.reserve.v1",
        json!({ "items": [{ "sku": "OOS-1" }] }),
    );
    assert_eq!(rules(vec![oos_ok], true).answer(&oos, false), succeeded());
    assert_eq!(
        rules(vec![], true).answer(&oos, false),
        refused("out of stock: OOS-1")
    );
    assert_eq!(rules(vec![], false).answer(&oos, false), succeeded());
    let charge = command(
        "payment",
        "order.payment.charge.v1",
        json!({ "amount_cents": 1 }),
    );
    assert_eq!(rules(vec![], false).answer(&charge, false), succeeded());
}

#[test]
fn the_first_matching_rule_wins() {
    let mut first = with("k", "starts_with", json!("A"), "refuse");
    first.reason = Some("first".into());
    let mut second = with("k", "starts_with", json!("AB"), "refuse");
    second.reason = Some("second".into());
    let r = rules(vec![first, second, rule("never")], false);
    let c = |v: &str| command("p", "t.v1", json!({ "k": v }));
    assert_eq!(r.answer(&c("ABC"), false), refused("first"));
    // No matcher: the catch-all answers what the others leave.
    assert_eq!(r.answer(&c("X"), false), None);
}

#[test]
fn a_rule_matches_its_participant_and_command_type_only() {
    let mut r = rule("never");
    r.command = Some("t.one.v1".into());
    let mut any = rule("refuse");
    any.participant = "q".into();
    let r = rules(vec![r, any], false);
    assert_eq!(r.answer(&command("p", "t.one.v1", json!({})), false), None);
    assert_eq!(
        r.answer(&command("p", "t.two.v1", json!({})), false),
        succeeded()
    );
    assert_eq!(
        r.answer(&command("q", "t.two.v1", json!({})), false),
        refused("refused by the simulated q")
    );
}

#[test]
fn each_matcher_tests_the_values_at_its_path() {
    let cases = [
        (
            "starts_with",
            json!("B-"),
            json!({ "xs": [{ "v": "A-1" }, { "v": "B-2" }] }),
            Some("B-2"),
        ),
        (
            "starts_with",
            json!("B-"),
            json!({ "xs": [{ "v": "A-1" }, { "v": 7 }] }),
            None,
        ),
        (
            "equals",
            json!("A-1"),
            json!({ "xs": [{ "v": "A-1" }] }),
            Some("A-1"),
        ),
        (
            "equals",
            json!(3),
            json!({ "xs": [{ "v": 3.0 }] }),
            Some("3.0"),
        ),
        (
            "equals",
            json!(true),
            json!({ "xs": [{ "v": true }] }),
            Some("true"),
        ),
        ("equals", json!(3), json!({ "xs": [{ "v": "3" }] }), None),
        (
            "above",
            json!(10),
            json!({ "xs": [{ "v": 10 }, { "v": 10.5 }] }),
            Some("10.5"),
        ),
        ("above", json!(10), json!({ "xs": [{ "v": "11" }] }), None),
        (
            "below",
            json!(0.5),
            json!({ "xs": [{ "v": 1 }, { "v": -2 }] }),
            Some("-2"),
        ),
        ("below", json!(0.5), json!({ "xs": [] }), None),
    ];
    for (matcher, bound, data, matched) in cases {
        let mut r = with("xs[*].v", matcher, bound.clone(), "fail");
        r.reason = Some("matched {value}".into());
        let answer = rules(vec![r], false).answer(&command("p", "t.v1", data.clone()), false);
        let expected = match matched {
            Some(value) => failed(&format!("matched {value}")),
            None => succeeded(),
        };
        assert_eq!(answer, expected, "{matcher} {bound} on {data}");
    }
}

#[test]
fn reasons_default_to_the_participant_and_the_matched_value() {
    let refuse = with("id", "equals", json!("x"), "refuse");
    let fail = with("n", "above", json!(1), "fail");
    let r = rules(vec![refuse, fail], false);
    let c = |data| command("p", "t.v1", data);
    assert_eq!(
        r.answer(&c(json!({ "id": "x" })), false),
        refused("refused by the simulated p: x")
    );
    assert_eq!(
        r.answer(&c(json!({ "n": 2 })), false),
        failed("simulated failure of p: 2")
    );
}

#[test]
fn a_result_has_the_idempotency_key_in_every_string() {
    let mut r = rule("succeed");
    r.result = Some(json!({
        "id": "x-{idempotency_key}",
        "nested": { "list": ["{idempotency_key}", 1], "n": 2 }
    }));
    let answer = rules(vec![r], false).answer(&command("p", "t.v1", json!({})), false);
    let expected = json!({
        "id": "x-saga-1:a-step",
        "nested": { "list": ["saga-1:a-step", 1], "n": 2 }
    });
    assert_eq!(answer, result(expected));
}

#[test]
fn a_rule_until_repaired_stops_applying_after_the_repair() {
    let mut broken = rule("fail");
    broken.until_repaired = true;
    let r = rules(vec![broken, rule("refuse")], false);
    let c = command("p", "t.v1", json!({}));
    assert_eq!(r.answer(&c, false), failed("simulated failure of p"));
    assert_eq!(r.answer(&c, true), refused("refused by the simulated p"));
}

mod invalid;
mod shipped;
