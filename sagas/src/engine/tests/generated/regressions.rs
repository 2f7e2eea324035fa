//! Cases the generated properties found, each reduced to a definition and
//! a few inputs: an operator's skip (as failed) of an awaited member of a
//! failed group once made the engine plan the compensation afresh, losing
//! the undos of members that succeeded while awaited and of the failed
//! step in doubt.

use super::*;

/// Three steps in one parallel group, each with an undo, and a final step.
fn three_in_a_group() -> Arc<TypeVersions> {
    let text = r#"
saga_type = "trio"
version = 1

[[steps]]
name = "s0"
participant = "p0"
command = "trio.s0.v1"
group = "g"
undo = { name = "u0", command = "trio.u0.v1" }

[[steps]]
name = "s1"
participant = "p1"
command = "trio.s1.v1"
group = "g"
undo = { name = "u1", command = "trio.u1.v1" }

[[steps]]
name = "s2"
participant = "p2"
command = "trio.s2.v1"
group = "g"
undo = { name = "u2", command = "trio.u2.v1" }

[final_compensation]
name = "final"
participant = "pf"
command = "trio.final.v1"
"#;
    let mut catalog = Catalog::default();
    catalog
        .add(Definition::from_toml("trio.toml", text).unwrap_or_else(|e| panic!("{e}")))
        .unwrap();
    catalog.get("trio").unwrap().clone()
}

fn skip_as_failed(h: &mut Harness) -> Vec<Event> {
    h.act(ActionKind::Skip {
        assume: Assume::Failed,
    })
    .unwrap()
}

fn plan_of(events: &[Event]) -> Vec<String> {
    match events.last().and_then(then_of) {
        Some(Then::Compensate { plan }) => plan.clone(),
        other => panic!("no compensation in {other:?}"),
    }
}

/// A member that succeeded while awaited keeps its undo when the operator
/// then skips another awaited member as failed.
#[test]
fn skipping_an_awaited_member_keeps_the_undo_of_one_that_succeeded() {
    let mut h = Harness::of(&three_in_a_group());
    h.start(json!({}), policy());
    h.reply("s0", 1, refused("no")).unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    h.reply("s1", 1, Outcome::Succeeded).unwrap();
    // s2 is still awaited; the operator says it failed.
    let events = skip_as_failed(&mut h);
    assert_eq!(plan_of(&events), ["u1", "final"]);
    assert_eq!(h.last_command().step, "u1");
}

/// The failed step's undo, planned because its command was out when the
/// operator compensated, stays planned when the operator then skips an
/// awaited member as failed.
#[test]
fn skipping_an_awaited_member_keeps_the_undo_of_the_failed_step_in_doubt() {
    let mut h = Harness::of(&three_in_a_group());
    h.start(json!({}), policy());
    h.reply("s2", 1, Outcome::Succeeded).unwrap();
    let events = h.act(ActionKind::Compensate).unwrap();
    // s0 (in hand, its command out) and s1 (awaited) may have been applied.
    assert_eq!(plan_of(&events), ["u2", "u1", "u0", "final"]);
    let events = skip_as_failed(&mut h);
    assert_eq!(events.len(), 2);
    assert_eq!(plan_of(&events), ["u2", "u0", "final"]);
    assert_eq!(h.last_command().step, "u2");
}
