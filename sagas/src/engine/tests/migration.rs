//! Migrating a running saga to another version of its definition: allowed
//! when every step it is in, has done or still has to undo exists there.

use super::versions::{both, kind_of, order_v1_text, order_v2, start_on, v1};
use super::*;

fn migrate(h: &mut Harness, to_version: u32) -> Result<Vec<Event>, Rejection> {
    h.act(ActionKind::Migrate { to_version })
}

/// Version 3: the order saga with its confirmation renamed, so a saga
/// waiting on `confirm-order` or having to release inventory cannot move.
fn order_v3() -> Definition {
    let text = order_v1_text()
        .replacen("\nversion = 1\n", "\nversion = 3\n", 1)
        .replace("name = \"confirm-order\"", "name = \"confirm-order-v3\"")
        .replace("name = \"release-inventory\"", "name = \"release-stock\"");
    Definition::from_toml("order.v3.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_running_saga_moves_to_v2_and_runs_its_new_step() {
    let kind = both();
    let mut h = start_on(&kind, Some(1)).unwrap();
    h.ok(Step::ReserveInventory);
    assert!(h.state.allowed_actions().contains(&"migrate"));
    let events = migrate(&mut h, 2).unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["OperatorIntervened", "SagaMigrated"]);
    match &events[1].kind {
        EventKind::SagaMigrated { from, to } => {
            assert_eq!((from.version, to.version), (1, 2));
            assert_eq!(to.hash.as_deref(), Some(order_v2().hash.as_str()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state.definition().unwrap().version, 2);
    // The step in hand goes on as it was: no command is sent again.
    assert_eq!(h.command_steps(), ["reserve-inventory", "charge-payment"]);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.last_command().step, "notify-customer");
    h.ok("notify-customer");
    assert_eq!(h.state.status(), Status::Completed);
    assert_eq!(h.rebuilt(&kind), h.state);
}

#[test]
fn after_migrating_a_failure_compensates_by_the_new_version() {
    let kind = both();
    let mut h = start_on(&kind, Some(1)).unwrap();
    h.ok(Step::ReserveInventory);
    migrate(&mut h, 2).unwrap();
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
    assert_eq!(
        h.command_steps(),
        [
            "reserve-inventory",
            "charge-payment",
            "release-inventory",
            "cancel-order"
        ]
    );
}

#[test]
fn a_version_without_the_step_in_hand_is_refused_naming_it() {
    let kind = kind_of(vec![v1(), order_v3()]);
    let mut h = start_on(&kind, Some(1)).unwrap();
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    let before = h.state.clone();
    let refused = migrate(&mut h, 3).unwrap_err();
    assert_eq!(
        refused,
        Rejection::NotMigratable {
            saga_type: "order".into(),
            to_version: 3,
            steps: vec!["confirm-order".into()],
        }
    );
    assert!(refused.to_string().contains("confirm-order"), "{refused}");
    assert_eq!(h.state, before);
}

#[test]
fn a_compensating_saga_needs_every_step_it_still_has_to_undo() {
    let kind = kind_of(vec![v1(), order_v3()]);
    let mut h = start_on(&kind, Some(1)).unwrap();
    h.ok(Step::ReserveInventory);
    h.reply(Step::ChargePayment, 1, refused("declined"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    match migrate(&mut h, 3).unwrap_err() {
        Rejection::NotMigratable { steps, .. } => assert_eq!(steps, ["release-inventory"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_same_or_an_unknown_version_is_invalid() {
    let kind = both();
    let mut h = start_on(&kind, Some(1)).unwrap();
    for (to, phrase) in [(1, "already runs version 1"), (9, "has no version 9")] {
        match migrate(&mut h, to).unwrap_err() {
            Rejection::Invalid(errors) => {
                assert_eq!(errors[0].field, "to_version");
                assert!(errors[0].message.contains(phrase), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn with_one_version_loaded_migrate_is_not_offered() {
    let mut h = Harness::started();
    assert!(!h.state.allowed_actions().contains(&"migrate"));
    assert!(matches!(
        migrate(&mut h, 2),
        Err(Rejection::NotAllowed {
            action: "migrate",
            ..
        })
    ));
}

#[test]
fn a_finished_saga_cannot_migrate() {
    let kind = both();
    let mut h = start_on(&kind, Some(1)).unwrap();
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert!(matches!(
        migrate(&mut h, 2),
        Err(Rejection::NotAllowed {
            action: "migrate",
            ..
        })
    ));
}

/// Order version 4: reservation and charge in one parallel group.
fn order_v4_grouped() -> Definition {
    let text = order_v1_text()
        .replacen("\nversion = 1\n", "\nversion = 4\n", 1)
        .replacen(
            "name = \"reserve-inventory\"",
            "name = \"reserve-inventory\"\ngroup = \"prepare\"",
            1,
        )
        .replacen(
            "name = \"charge-payment\"",
            "name = \"charge-payment\"\ngroup = \"prepare\"",
            1,
        );
    Definition::from_toml("order.v4.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_version_that_groups_the_step_in_hand_otherwise_is_refused() {
    let kind = kind_of(vec![v1(), order_v4_grouped()]);
    // Reserving under v1: in v4 the charge would be sent with it, so moving
    // there would skip the charge.
    let mut h = start_on(&kind, Some(1)).unwrap();
    match migrate(&mut h, 4).unwrap_err() {
        Rejection::NotMigratable { steps, .. } => {
            assert_eq!(steps, ["charge-payment (not in the same parallel group)"])
        }
        other => panic!("{other:?}"),
    }
    // Confirming under v1: everything before it is the same in v4.
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    migrate(&mut h, 4).unwrap();
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
}
