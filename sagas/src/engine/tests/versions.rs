//! Definition versions: a start names one or gets the newest, a saga keeps
//! the version it started on to its end, and a history naming a version this
//! process has not loaded is unreadable.

use super::*;
use crate::definition::SHIPPED as SHIPPED_FILES;

/// The shipped order definition as text.
pub(super) fn order_v1_text() -> &'static str {
    SHIPPED_FILES
        .iter()
        .find(|(file, _)| *file == "order.v1.toml")
        .expect("the order definition ships")
        .1
}

/// Version 2 of the order saga: the charge's command moved to v2 and the
/// customer is notified after the confirmation.
pub(super) fn order_v2() -> Definition {
    let v1 = order_v1_text();
    assert_eq!(v1.matches("\nversion = 1\n").count(), 1);
    let notify = r#"[[steps]]
name = "notify-customer"
participant = "notification"
command = "order.notification.send.v1"
event = "CustomerNotified"
data = { order_id = "${input.order_id}" }

[final_compensation]"#;
    let text = v1
        .replacen("\nversion = 1\n", "\nversion = 2\n", 1)
        .replace("\"order.payment.charge.v1\"", "\"order.payment.charge.v2\"")
        .replacen("[final_compensation]", notify, 1);
    Definition::from_toml("order.v2.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn kind_of(definitions: Vec<Definition>) -> Arc<TypeVersions> {
    let mut catalog = Catalog::default();
    for d in definitions {
        catalog.add(d).unwrap();
    }
    catalog.get("order").unwrap().clone()
}

pub(super) fn v1() -> Definition {
    order_kind().get(1).unwrap().as_ref().clone()
}

pub(super) fn both() -> Arc<TypeVersions> {
    kind_of(vec![v1(), order_v2()])
}

pub(super) fn start_on(
    kind: &Arc<TypeVersions>,
    version: Option<u32>,
) -> Result<Harness, Rejection> {
    let mut h = Harness::of(kind);
    h.when(Input::Start {
        start: order(),
        version,
        policy: policy(),
        now: t0(),
    })?;
    Ok(h)
}

fn started_on(h: &Harness) -> &DefinitionRef {
    match &h.history[0].kind {
        EventKind::SagaStarted { definition, .. } => definition,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_start_naming_a_version_that_is_not_loaded_is_invalid_on_version() {
    for version in [0, 3] {
        let Err(Rejection::Invalid(errors)) = start_on(&both(), Some(version)) else {
            panic!("version {version} was accepted")
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "version");
        assert!(
            errors[0].message.contains("loaded: 1, 2"),
            "{}",
            errors[0].message
        );
    }
    assert!(
        matches!(start_on(&order_kind(), Some(2)), Err(Rejection::Invalid(ref e)) if e[0].field == "version")
    );
}

#[test]
fn a_start_without_a_version_gets_the_newest() {
    let kind = both();
    let mut h = start_on(&kind, None).unwrap();
    let v2 = kind.get(2).unwrap();
    assert_eq!(
        started_on(&h),
        &DefinitionRef {
            saga_type: "order".into(),
            version: 2,
            hash: Some(v2.hash.clone())
        }
    );
    assert_ne!(v2.hash, kind.get(1).unwrap().hash);
    h.ok(Step::ReserveInventory);
    assert_eq!(h.last_command().command_type, "order.payment.charge.v2");
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Running);
    assert_eq!(h.last_command().step, "notify-customer");
    h.ok("notify-customer");
    assert_eq!(h.state.status(), Status::Completed);
    let progress = h.state.explain().progress;
    assert_eq!(progress["definition"]["version"], 2);
    assert_eq!(progress["definition"]["hash"], v2.hash.as_str());
}

#[test]
fn a_saga_started_on_v1_runs_to_its_end_on_v1() {
    let kind = both();
    let mut h = start_on(&kind, Some(1)).unwrap();
    assert_eq!(started_on(&h).version, 1);
    h.ok(Step::ReserveInventory);
    // Rebuilt midway, as after a restart, it still runs on v1.
    h.state = h.rebuilt(&kind);
    assert_eq!(h.state.definition().unwrap().version, 1);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(
        h.state.status(),
        Status::Completed,
        "v1 ends with the confirmation"
    );
    let v1 = v1();
    let v1_types: Vec<&str> = v1.actions().map(|a| a.command_type.as_str()).collect();
    for c in &h.commands {
        assert!(v1_types.contains(&c.command_type.as_str()), "{c:?}");
    }
    assert_eq!(h.commands[1].command_type, "order.payment.charge.v1");
    assert_eq!(h.state.explain().progress["definition"]["version"], 1);
}

#[test]
fn a_saga_started_before_v2_was_loaded_keeps_running_on_v1() {
    let mut h = Harness::new();
    h.start(order(), policy());
    h.ok(Step::ReserveInventory);
    // The process restarts with v2 loaded beside v1.
    let kind = both();
    h.state = h.rebuilt(&kind);
    h.ok(Step::ChargePayment);
    h.reply(Step::ConfirmOrder, 1, refused("no")).unwrap();
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(h.commands[1].command_type, "order.payment.charge.v1");
    assert!(!h.command_steps().contains(&"notify-customer"));
}

#[test]
fn a_history_naming_a_version_that_is_not_loaded_is_unreadable() {
    let h = start_on(&both(), Some(2)).unwrap();
    let only_v1 = order_kind();
    let folded = h
        .history
        .iter()
        .fold(DefinedSaga::new(&only_v1, h.state.id()), |s, e| s.evolve(e));
    let why = folded.unreadable().expect("v2 is not loaded");
    assert!(why.contains("version 2"), "{why}");
    assert!(why.contains("`order`"), "{why}");
    assert!(why.contains("not loaded"), "{why}");
    assert_eq!(folded.definition(), None);
    assert_eq!(folded.view().step, None);
    assert!(folded.commands(&h.history[0]).is_empty(), "nothing is sent");
    assert_eq!(
        folded.decide(Input::Start {
            start: order(),
            version: None,
            policy: policy(),
            now: t0(),
        }),
        Err(Rejection::AlreadyStarted),
        "it is not started a second time"
    );
    assert_eq!(h.state.unreadable(), None);
    assert_eq!(Harness::started().state.unreadable(), None);
}

#[test]
fn a_stored_history_naming_a_version_that_is_not_loaded_is_unreadable() {
    let stored = json!([{
        "type": "SagaStarted",
        "at": "2026-01-01T12:00:00Z",
        "input": order(),
        "definition": {"saga_type": "order", "version": 9, "hash": "abc"},
        "policy": serde_json::to_value(policy()).unwrap()
    }]);
    let events: Vec<Event> = serde_json::from_value(stored).unwrap();
    let saga = events.iter().fold(
        DefinedSaga::new(&order_kind(), SagaId::from_uuid(Uuid::nil())),
        |s, e| s.evolve(e),
    );
    let why = saga.unreadable().expect("version 9 is not loaded");
    assert!(why.contains("version 9 of saga type `order`"), "{why}");
}

#[test]
fn a_history_of_another_saga_type_is_unreadable() {
    let mut h = Harness::of(&shipped("return"));
    h.start(
        json!({"return_id": "r-1", "order_id": "o-1", "customer_id": "c-1",
               "items": [{"sku": "SKU-1", "qty": 1}], "amount_cents": 500, "currency": "EUR"}),
        policy(),
    );
    let folded = h
        .history
        .iter()
        .fold(DefinedSaga::new(&order_kind(), h.state.id()), |s, e| {
            s.evolve(e)
        });
    assert_eq!(
        folded.definition().map(|d| d.saga_type.as_str()),
        None,
        "a return is not run as an order"
    );
    let why = folded.unreadable().expect("the history is a return's");
    assert!(why.contains("`return`"), "{why}");
}
