//! Definition files: the shipped ones load, bad ones are refused precisely.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;

/// A small valid definition every refusal below is one edit away from.
const BASE: &str = r#"saga_type = "demo"
version = 1
description = "A saga for the tests."

[input_schema]
type = "object"
required = ["id"]

[[steps]]
name = "reserve"
participant = "inventory"
command = "demo.inventory.reserve.v1"
event = "Reserved"
data = { id = "${input.id}" }
result_schema = { type = "object" }

[steps.undo]
name = "release"
command = "demo.inventory.release.v1"
event = "Released"
data = { id = "${input.id}", reservation = "${reserve.result.reservation_id}" }

[[steps]]
name = "charge"
participant = "payment"
command = "demo.payment.charge.v1"
event = "Charged"
data = { id = "${input.id}", held = "${reserve.result.reservation_id}" }
retry = { max_attempts = 3 }
timeout_ms = 30000

[final_compensation]
name = "cancel"
participant = "orders"
command = "demo.orders.cancel.v1"
data = { order = "${input.id}" }
"#;

/// `BASE`, the same content written another way: keys reordered, comments,
/// inline tables for standard ones and dotted keys for inline tables.
const BASE_REWRITTEN: &str = r#"# The demo saga, written another way.
version = 1 # the first
saga_type = "demo"
input_schema = { required = ["id"], type = "object" }
description = "A saga for the tests."

[[steps]]
participant = "inventory"
name = "reserve"
event = "Reserved"
command = "demo.inventory.reserve.v1"
data.id = "${input.id}"
result_schema.type = "object"
undo = { name = "release", event = "Released", command = "demo.inventory.release.v1", data = { reservation = "${reserve.result.reservation_id}", id = "${input.id}" } }

# The second step.
[[steps]]
timeout_ms = 30_000
name = "charge"
event = "Charged"
command = "demo.payment.charge.v1"
participant = "payment"

[steps.retry]
max_attempts = 3

[steps.data]
held = "${reserve.result.reservation_id}"
id = "${input.id}"

[final_compensation]
data.order = "${input.id}"
command = "demo.orders.cancel.v1"
participant = "orders"
name = "cancel"
"#;

const FILE: &str = "demo.v1.toml";

/// The JSON Schema of the definition format, for editors.
const FORMAT_SCHEMA: &str = include_str!("../../../definitions/saga-definition.schema.json");

fn load(text: &str) -> Definition {
    Definition::from_toml(FILE, text).unwrap_or_else(|e| panic!("{e}"))
}

/// `BASE` with each `(from, to)` replaced; each `from` must be in it once.
fn edited(edits: &[(&str, &str)]) -> String {
    edits.iter().fold(BASE.to_owned(), |text, (from, to)| {
        assert_eq!(text.matches(from).count(), 1, "`{from}` once in {text}");
        text.replacen(from, to, 1)
    })
}

fn edit(from: &str, to: &str) -> String {
    edited(&[(from, to)])
}

/// Every problem of a definition that must be refused.
fn problems(text: &str) -> Vec<Problem> {
    match Definition::from_toml(FILE, text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, FILE);
            e.problems
        }
    }
}

/// The one problem of a definition that must be refused for one reason.
fn problem(text: &str) -> Problem {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// Asserts `p` is at `at` and its message says `phrase`.
fn assert_problem(p: &Problem, at: &str, phrase: &str) {
    assert_eq!(p.at, at, "{p:?}");
    assert!(p.message.contains(phrase), "`{phrase}` not in {p:?}");
}

/// `line L, column C` of the first `needle` in `text` (columns in characters).
fn position_of(text: &str, needle: &str) -> String {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}")
}

fn format_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(FORMAT_SCHEMA).expect("the format's schema is JSON");
    jsonschema::meta::validate(&schema).expect("the format's schema is a valid JSON Schema");
    jsonschema::validator_for(&schema).expect("the format's schema compiles")
}

/// Every violation of the format's schema, as `instance path: message`.
fn format_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let document: Value = toml::from_str(text).expect("TOML");
    validator
        .iter_errors(&document)
        .map(|e| format!("{}: {e}", e.instance_path().as_str()))
        .collect()
}

fn names(definition: &Definition) -> Vec<(&str, Option<&str>)> {
    definition
        .steps
        .iter()
        .map(|s| {
            (
                s.action.name.as_str(),
                s.undo.as_ref().map(|u| u.name.as_str()),
            )
        })
        .collect()
}

fn events(definition: &Definition) -> Vec<&str> {
    definition.actions().map(|a| a.event.as_str()).collect()
}

// The shipped definitions.

#[test]
fn the_order_definition_loads() {
    let all = Definition::shipped();
    let order = all.iter().find(|d| d.saga_type == "order").expect("order");
    assert_eq!(order.version, 1);
    assert_eq!(
        names(order),
        [
            ("reserve-inventory", Some("release-inventory")),
            ("charge-payment", Some("refund-payment")),
            ("confirm-order", None),
        ]
    );
    let last = order
        .final_compensation
        .as_ref()
        .expect("a final compensation");
    assert_eq!(
        (
            last.name.as_str(),
            last.participant.as_str(),
            last.command_type.as_str()
        ),
        ("cancel-order", "order", "order.order.cancel.v1")
    );
    assert_eq!(
        events(order),
        [
            "InventoryReserved",
            "InventoryReleased",
            "PaymentCharged",
            "PaymentRefunded",
            "OrderConfirmed",
            "OrderCancelled",
        ]
    );
    assert_eq!(order.business_key, None);
    assert!(order.input_schema.is_some());
    assert!(order.steps.iter().all(|s| !s.pivot));
    // An undo sends to its forward step's participant unless it names one.
    let refund = order.steps[1].undo.as_ref().expect("refund-payment");
    assert_eq!(refund.participant, "payment");
    assert_eq!(refund.command_type, "order.payment.refund.v1");
    assert_eq!(
        refund.data["charge_id"],
        json!("${charge-payment.result.charge_id}")
    );
    assert_eq!(
        order.find("refund-payment").map(|(_, r)| r),
        Some(Role::Undo(1))
    );
    assert_eq!(
        order.find("confirm-order").map(|(_, r)| r),
        Some(Role::Forward(2))
    );
    assert_eq!(
        order.find("cancel-order").map(|(_, r)| r),
        Some(Role::Final)
    );
    assert_eq!(order.find("nope"), None);
}

#[test]
fn the_return_definition_loads() {
    let all = Definition::shipped();
    let ret = all
        .iter()
        .find(|d| d.saga_type == "return")
        .expect("return");
    assert_eq!(ret.version, 1);
    assert_eq!(
        names(ret),
        [
            ("approve-return", None),
            ("refund-payment", Some("cancel-refund")),
            ("restock-items", None),
        ]
    );
    assert_eq!(
        ret.final_compensation.as_ref().map(|f| f.name.as_str()),
        Some("reject-return")
    );
    assert_eq!(
        events(ret),
        [
            "ReturnApproved",
            "CustomerRefunded",
            "RefundCancelled",
            "ItemsRestocked",
            "ReturnRejected",
        ]
    );
    assert_eq!(ret.business_key, Some(vec!["return_id".to_owned()]));
    let pivots: Vec<bool> = ret.steps.iter().map(|s| s.pivot).collect();
    assert_eq!(pivots, [false, true, false]);
    assert!(ret.steps[1].result_schema.is_some());
    assert_eq!(ret.steps[2].retry.max_attempts, Some(5));
    assert_eq!(ret.steps[2].retry.jitter, None);
}

#[test]
fn a_catalog_of_the_shipped_definitions_knows_every_destination() {
    let mut catalog = Catalog::default();
    for d in Definition::shipped() {
        catalog.add(d).expect("added");
    }
    let types: Vec<&str> = catalog.types().map(|t| t.saga_type.as_str()).collect();
    assert_eq!(types, ["order", "return"]);
    assert_eq!(catalog.get("return").map(|t| t.newest().version), Some(1));
    let destinations = catalog.destinations();
    let destinations: Vec<(&str, &str)> = destinations
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        destinations,
        [
            ("inventory", "order.inventory.release.v1"),
            ("inventory", "order.inventory.reserve.v1"),
            ("inventory", "return.inventory.restock.v1"),
            ("order", "order.order.cancel.v1"),
            ("order", "order.order.confirm.v1"),
            ("payment", "order.payment.charge.v1"),
            ("payment", "order.payment.refund.v1"),
            ("payment", "return.payment.cancel-refund.v1"),
            ("payment", "return.payment.refund.v1"),
            ("returns", "return.returns.approve.v1"),
            ("returns", "return.returns.reject.v1"),
        ]
    );
}

// The hash and the catalog.

#[test]
fn the_same_content_formatted_otherwise_hashes_the_same() {
    let base = load(BASE);
    let rewritten = load(BASE_REWRITTEN);
    assert_eq!(base.hash, rewritten.hash);
    assert_eq!(base, rewritten);
    assert_eq!(base.hash.len(), 64);
    assert!(base.hash.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn a_changed_timeout_changes_the_hash() {
    let base = load(BASE);
    let slower = load(&edit("timeout_ms = 30000", "timeout_ms = 30001"));
    assert_ne!(base.hash, slower.hash);
    let none = load(&edit("timeout_ms = 30000\n", ""));
    assert_ne!(base.hash, none.hash);
    assert_ne!(slower.hash, none.hash);
}

#[test]
fn a_version_never_changes_in_a_catalog() {
    let mut catalog = Catalog::default();
    let base = load(BASE);
    catalog.add(base.clone()).expect("first");
    let changed = load(&edit("timeout_ms = 30000", "timeout_ms = 30001"));
    let error = catalog
        .add(changed.clone())
        .expect_err("other content, same version");
    assert_eq!(
        error,
        CatalogError::Changed {
            saga_type: "demo".into(),
            version: 1,
            existing: base.hash.clone(),
            offered: changed.hash.clone(),
        }
    );
    assert!(
        error.to_string().contains("give this one a new version"),
        "{error}"
    );
    // The same content again, however written, is fine.
    catalog.add(base.clone()).expect("the same again");
    catalog
        .add(load(BASE_REWRITTEN))
        .expect("the same, rewritten");
    let demo = catalog.get("demo").expect("demo");
    assert_eq!(demo.versions.len(), 1);
    assert_eq!(
        demo.get(1).map(|d| d.hash.as_str()),
        Some(base.hash.as_str())
    );
}

#[test]
fn the_newest_version_is_the_highest() {
    let mut catalog = Catalog::default();
    for version in ["3", "1", "10", "2"] {
        let text = edit("version = 1", &format!("version = {version}"));
        catalog.add(load(&text)).expect("added");
    }
    let demo = catalog.get("demo").expect("demo");
    assert_eq!(demo.newest().version, 10);
    assert_eq!(
        demo.versions.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 10]
    );
    assert!(demo.get(4).is_none());
    assert!(catalog.get("order").is_none());
}

// The business key.

#[test]
fn the_business_key_is_found_in_the_input() {
    let all = Definition::shipped();
    let ret = all
        .iter()
        .find(|d| d.saga_type == "return")
        .expect("return");
    assert_eq!(
        ret.business_key_of(&json!({"return_id": "r-1", "order_id": "o-1"})),
        Some("r-1".to_owned())
    );
    assert_eq!(
        ret.business_key_of(&json!({"return_id": 42})),
        Some("42".to_owned())
    );
    assert_eq!(ret.business_key_of(&json!({"order_id": "o-1"})), None);
    assert_eq!(ret.business_key_of(&json!({"return_id": null})), None);
    assert_eq!(
        ret.business_key_of(&json!({"return_id": {"id": "r-1"}})),
        None
    );
    let order = all.iter().find(|d| d.saga_type == "order").expect("order");
    assert_eq!(order.business_key_of(&json!({"order_id": "o-1"})), None);
}

#[test]
fn a_business_key_may_be_a_dot_path() {
    let nested = load(&edit(
        "description = \"A saga for the tests.\"",
        "business_key = \"customer.id\"",
    ));
    assert_eq!(
        nested.business_key,
        Some(vec!["customer".to_owned(), "id".to_owned()])
    );
    assert_eq!(
        nested.business_key_of(&json!({"customer": {"id": "c-7"}})),
        Some("c-7".to_owned())
    );
    assert_eq!(nested.business_key_of(&json!({"customer": "c-7"})), None);
}

// Refusals: each bad definition with its place and what is wrong.

#[test]
fn a_mapping_from_an_unknown_step_is_refused() {
    let p = problem(&edit(
        "held = \"${reserve.result.reservation_id}\"",
        "held = \"${nope.result.x}\"",
    ));
    assert_problem(&p, "steps[1].data.held", "unknown step `nope`");
    assert!(
        p.message.contains("results can be read of: reserve"),
        "{p:?}"
    );
}

#[test]
fn a_mapping_from_a_later_step_is_refused() {
    let p = problem(&edit(
        "data = { id = \"${input.id}\" }",
        "data = { id = \"${input.id}\", charge = \"${charge.result.charge_id}\" }",
    ));
    assert_problem(
        &p,
        "steps[0].data.charge",
        "reads the result of `charge`, which runs after this step",
    );
}

#[test]
fn a_mapping_from_its_own_step_is_refused() {
    let p = problem(&edit(
        "held = \"${reserve.result.reservation_id}\"",
        "held = \"${charge.result.x}\"",
    ));
    assert_problem(&p, "steps[1].data.held", "its own result");
}

#[test]
fn an_undo_mapping_from_an_unknown_step_is_refused() {
    let p = problem(&edit(
        "reservation = \"${reserve.result.reservation_id}\"",
        "reservation = \"${nope.result.reservation_id}\"",
    ));
    assert_problem(&p, "steps[0].undo.data.reservation", "unknown step `nope`");
}

#[test]
fn an_undo_mapping_from_a_later_step_is_refused() {
    let p = problem(&edit(
        "reservation = \"${reserve.result.reservation_id}\"",
        "reservation = \"${charge.result.charge_id}\"",
    ));
    assert_problem(
        &p,
        "steps[0].undo.data.reservation",
        "which runs after this step",
    );
}

#[test]
fn a_mapping_from_an_undo_is_refused() {
    let p = problem(&edit(
        "data = { order = \"${input.id}\" }",
        "data = { order = \"${release.result.x}\" }",
    ));
    assert_problem(
        &p,
        "final_compensation.data.order",
        "unknown step `release`",
    );
}

#[test]
fn two_forward_steps_of_one_name_are_refused() {
    let p = problem(&edit("name = \"charge\"", "name = \"reserve\""));
    assert_problem(
        &p,
        "steps[1].name",
        "duplicate step name `reserve` (first at steps[0].name)",
    );
}

#[test]
fn an_undo_named_like_a_forward_step_is_refused() {
    let p = problem(&edit("name = \"release\"", "name = \"charge\""));
    // The undo comes first in the file, so the forward step is the duplicate.
    assert_problem(
        &p,
        "steps[1].name",
        "duplicate step name `charge` (first at steps[0].undo.name)",
    );
}

#[test]
fn a_final_compensation_named_like_an_undo_is_refused() {
    let p = problem(&edit("name = \"cancel\"", "name = \"release\""));
    assert_problem(
        &p,
        "final_compensation.name",
        "duplicate step name `release` (first at steps[0].undo.name)",
    );
}

#[test]
fn a_final_compensation_named_like_a_forward_step_is_refused() {
    let p = problem(&edit("name = \"cancel\"", "name = \"charge\""));
    assert_problem(
        &p,
        "final_compensation.name",
        "duplicate step name `charge` (first at steps[1].name)",
    );
}

#[test]
fn an_invalid_input_schema_is_refused() {
    let p = problem(&edit(
        "type = \"object\"\nrequired",
        "type = \"colour\"\nrequired",
    ));
    assert_problem(&p, "input_schema.type", "not a valid JSON Schema");
    assert!(p.message.contains("colour"), "{p:?}");
}

#[test]
fn an_invalid_result_schema_is_refused() {
    let p = problem(&edit(
        "result_schema = { type = \"object\" }",
        "result_schema = { type = \"object\", properties = { n = { minimum = \"ten\" } } }",
    ));
    assert_problem(
        &p,
        "steps[0].result_schema.properties.n.minimum",
        "not a valid JSON Schema",
    );
}

#[test]
fn an_invalid_schema_is_refused_at_its_keyword() {
    let p = problem(&edit(
        "type = \"object\"\nrequired",
        "type = \"colour\"\nrequired",
    ));
    assert_eq!(p.at, "input_schema.type", "{p:?}");
    assert!(!p.message.contains("anyOf"), "{p:?}");
    let p = problem(&edit(
        "result_schema = { type = \"object\" }",
        "result_schema = { type = \"object\", properties = { n = { minimum = \"ten\" } } }",
    ));
    assert_eq!(p.at, "steps[0].result_schema.properties.n.minimum", "{p:?}");
}

#[test]
fn a_saga_without_steps_is_refused() {
    let text = "saga_type = \"demo\"\nversion = 1\n\n[final_compensation]\nname = \"cancel\"\nparticipant = \"orders\"\ncommand = \"demo.orders.cancel.v1\"\n";
    let p = problem(text);
    assert_problem(&p, "steps", "the saga has no steps");
    let p = problem("saga_type = \"demo\"\nversion = 1\nsteps = []\n");
    assert_problem(&p, "steps", "give at least one [[steps]]");
}

#[test]
fn an_unknown_field_is_refused_at_its_key() {
    let text = edit(
        "event = \"Reserved\"\n",
        "event = \"Reserved\"\ntimeout = 5\n",
    );
    let p = problem(&text);
    assert_eq!(position_of(&text, "timeout = 5"), "line 14, column 1");
    assert_problem(&p, "line 14, column 1", "unknown field `timeout`");
    // It names the fields there are.
    assert!(p.message.contains("timeout_ms"), "{p:?}");
}

#[test]
fn an_unknown_field_of_an_undo_retry_or_the_file_is_refused_at_its_key() {
    for (from, to, key) in [
        (
            "event = \"Released\"",
            "event = \"Released\"\nretry = { max_attempts = 2 }",
            "retry =",
        ),
        (
            "retry = { max_attempts = 3 }",
            "retry = { max_attempts = 3, backoff_ms = 10 }",
            "backoff_ms",
        ),
        (
            "version = 1",
            "version = 1\ntimeout_ms = 5",
            "timeout_ms = 5",
        ),
        (
            "name = \"cancel\"",
            "name = \"cancel\"\npivot = true",
            "pivot",
        ),
    ] {
        let text = edit(from, to);
        let p = problem(&text);
        let field = key.trim_end_matches(" =").split(' ').next().expect("a key");
        assert_problem(
            &p,
            &position_of(&text, key),
            &format!("unknown field `{field}`"),
        );
    }
}

#[test]
fn a_toml_syntax_error_is_refused_at_its_line_and_column() {
    let text = edit("participant = \"payment\"", "participant = \"payment");
    let p = problem(&text);
    assert_eq!(p.at, "line 25, column 23", "{p:?}");
    assert!(p.message.contains("invalid basic string"), "{p:?}");

    let text = edit("version = 1", "version = = 1");
    let p = problem(&text);
    assert_eq!(p.at, "line 2, column 11", "{p:?}");
}

#[test]
fn a_toml_message_is_one_line() {
    let error =
        Definition::from_toml(FILE, &edit("version = 1", "version = = 1")).expect_err("refused");
    assert_eq!(error.to_string().lines().count(), 1, "{error}");
}

// Found by fuzzing: a name quoted in a problem kept its control characters,
// NUL among them.
#[test]
fn a_problem_quoting_the_file_is_a_printable_line() {
    let error = Definition::from_toml(
        FILE,
        &edit(
            "saga_type = \"demo\"",
            "saga_type = \"\\u0000g\\n\\u001b[2J\"",
        ),
    )
    .expect_err("refused");
    let shown = error.to_string();
    assert_eq!(shown.lines().count(), error.problems.len(), "{shown}");
    assert!(
        !shown.lines().flat_map(str::chars).any(char::is_control),
        "{shown:?}"
    );
    assert!(shown.contains(r"`\u{0}g\u{a}\u{1b}[2J` must be"), "{shown}");
}

// A definition is stored as `jsonb`, which holds no U+0000: taken, it could
// not be stored, and the node would not start.
#[test]
fn a_nul_anywhere_in_a_definition_is_refused_at_its_place() {
    let text = edited(&[
        (
            "description = \"A saga for the tests.\"",
            "description = \"A\\u0000B\"",
        ),
        (
            "data = { order = \"${input.id}\" }",
            "data = { order = \"${input.id}\", \"k\\u0000\" = [\"\\u0000\"] }",
        ),
    ]);
    let problems = problems(&text);
    let nul = |p: &&Problem| p.message.contains("NUL");
    let places: Vec<&str> = problems.iter().filter(nul).map(|p| p.at.as_str()).collect();
    assert_eq!(
        places,
        [
            "description",
            r"final_compensation.data.k\u{0}",
            r"final_compensation.data.k\u{0}[0]"
        ],
        "{problems:?}"
    );
}

#[test]
fn a_column_counts_characters_not_bytes() {
    let text = edit(
        "description = \"A saga for the tests.\"",
        "description = \"Rückgabe\" x",
    );
    let p = problem(&text);
    assert_eq!(p.at, position_of(&text, "x\n"), "{p:?}");
}

#[test]
fn a_malformed_expression_is_refused() {
    let p = problem(&edit(
        "data = { id = \"${input.id}\" }",
        "data = { id = \"x ${input.a}\" }",
    ));
    assert_problem(&p, "steps[0].data.id", "must be a whole `${…}` expression");
    let p = problem(&edit(
        "data = { order = \"${input.id}\" }",
        "data = { order = [\"${input..id}\"] }",
    ));
    assert_problem(&p, "final_compensation.data.order[0]", "empty path segment");
}

#[test]
fn a_reserved_event_name_is_refused() {
    let p = problem(&edit("event = \"Reserved\"", "event = \"StepFailed\""));
    assert_problem(
        &p,
        "steps[0].event",
        "`StepFailed` is an event of the engine's own",
    );
}

#[test]
fn a_duplicate_event_name_is_refused() {
    let p = problem(&edit("event = \"Charged\"", "event = \"Reserved\""));
    assert_problem(
        &p,
        "steps[1].event",
        "duplicate event name `Reserved` (first at steps[0].event)",
    );
    let p = problem(&edit("event = \"Released\"", "event = \"Reserved\""));
    assert_problem(
        &p,
        "steps[0].undo.event",
        "duplicate event name `Reserved` (first at steps[0].event)",
    );
}

#[test]
fn the_default_event_name_may_be_shared() {
    let text = edited(&[
        ("event = \"Reserved\"\n", ""),
        ("event = \"Charged\"\n", ""),
    ]);
    let d = load(&text);
    assert_eq!(
        events(&d),
        [
            "StepSucceeded",
            "Released",
            "StepSucceeded",
            "StepSucceeded"
        ]
    );
}

#[test]
fn version_zero_is_refused() {
    let p = problem(&edit("version = 1", "version = 0"));
    assert_problem(&p, "version", "must be 1 or more");
}

#[test]
fn a_step_name_with_a_space_is_refused() {
    let p = problem(&edit("name = \"charge\"", "name = \"charge card\""));
    assert_problem(
        &p,
        "steps[1].name",
        "`charge card` must be 1 to 100 letters, digits, `-` or `_`",
    );
}

#[test]
fn a_bad_saga_type_participant_or_command_is_refused() {
    let p = problem(&edit("saga_type = \"demo\"", "saga_type = \"de mo\""));
    assert_problem(&p, "saga_type", "letters, digits");
    let p = problem(&edit("participant = \"payment\"", "participant = \"\""));
    assert_problem(&p, "steps[1].participant", "letters, digits");
    let p = problem(&edit(
        "command = \"demo.payment.charge.v1\"",
        "command = \"demo.payment charge.v1\"",
    ));
    assert_problem(&p, "steps[1].command", "versioned command type");
}

#[test]
fn a_command_without_a_version_is_refused() {
    let p = problem(&edit(
        "command = \"demo.payment.charge.v1\"",
        "command = \"demo.payment.charge\"",
    ));
    assert_problem(&p, "steps[1].command", "versioned command type");
}

#[test]
fn a_step_named_input_is_refused() {
    let p = problem(&edit("name = \"cancel\"", "name = \"input\""));
    assert_problem(&p, "final_compensation.name", "`input` is reserved");
}

#[test]
fn zero_attempts_are_refused() {
    let p = problem(&edit(
        "retry = { max_attempts = 3 }",
        "retry = { max_attempts = 0 }",
    ));
    assert_problem(&p, "steps[1].retry.max_attempts", "must be 1 or more");
    let p = problem(&edit(
        "event = \"Released\"",
        "event = \"Released\"\nmax_attempts = 0",
    ));
    assert_problem(&p, "steps[0].undo.max_attempts", "must be 1 or more");
}

#[test]
fn a_zero_timeout_or_backwards_backoff_is_refused() {
    let p = problem(&edit("timeout_ms = 30000", "timeout_ms = 0"));
    assert_problem(&p, "steps[1].timeout_ms", "must be 1 or more");
    let p = problem(&edit(
        "retry = { max_attempts = 3 }",
        "retry = { initial_backoff_ms = 500, max_backoff_ms = 100 }",
    ));
    assert_problem(
        &p,
        "steps[1].retry.initial_backoff_ms",
        "500 is more than max_backoff_ms (100)",
    );
}

#[test]
fn an_absurd_timeout_is_refused() {
    let p = problem(&edit(
        "timeout_ms = 30000",
        "timeout_ms = 9000000000000000000",
    ));
    assert_eq!(p.at, "steps[1].timeout_ms", "{p:?}");
}

#[test]
fn a_malformed_business_key_is_refused() {
    let p = problem(&edit(
        "description = \"A saga for the tests.\"",
        "business_key = \"customer..id\"",
    ));
    assert_problem(&p, "business_key", "dot path into the input");
}

#[test]
fn a_final_compensation_without_participant_is_refused() {
    let p = problem(&edit("participant = \"orders\"\n", ""));
    assert_problem(&p, "final_compensation.participant", "missing");
}

#[test]
fn a_step_without_participant_is_refused_at_its_table() {
    let text = edit("participant = \"inventory\"\n", "");
    let p = problem(&text);
    assert_problem(&p, "line 9, column 1", "missing field `participant`");
}

#[test]
fn a_step_without_command_is_refused_at_its_table() {
    let text = edit("command = \"demo.payment.charge.v1\"\n", "");
    let p = problem(&text);
    assert_eq!(
        position_of(&text, "[[steps]]\nname = \"charge\""),
        "line 23, column 1"
    );
    assert_problem(&p, "line 23, column 1", "missing field `command`");
}

#[test]
fn an_undo_without_command_is_refused_at_its_table() {
    let text = edit("command = \"demo.inventory.release.v1\"\n", "");
    let p = problem(&text);
    assert_problem(
        &p,
        &position_of(&text, "[steps.undo]"),
        "missing field `command`",
    );
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = edited(&[
        ("version = 1", "version = 0"),
        ("event = \"Reserved\"", "event = \"StepFailed\""),
        (
            "reservation = \"${reserve.result.reservation_id}\"",
            "reservation = \"${nope.result.x}\"",
        ),
        ("name = \"charge\"", "name = \"charge card\""),
        (
            "retry = { max_attempts = 3 }",
            "retry = { max_attempts = 0 }",
        ),
        ("name = \"cancel\"", "name = \"release\""),
    ]);
    let all = problems(&text);
    let places: Vec<&str> = all.iter().map(|p| p.at.as_str()).collect();
    assert_eq!(
        places,
        [
            "version",
            "steps[0].event",
            "steps[0].undo.data.reservation",
            "steps[1].name",
            "steps[1].retry.max_attempts",
            "final_compensation.name",
        ],
        "{all:#?}"
    );
}

#[test]
fn an_error_shows_file_place_and_message_per_line() {
    let text = edited(&[
        ("version = 1", "version = 0"),
        ("event = \"Reserved\"", "event = \"StepFailed\""),
    ]);
    let error = Definition::from_toml(FILE, &text).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "demo.v1.toml: version: must be 1 or more\n\
         demo.v1.toml: steps[0].event: `StepFailed` is an event of the engine's own"
    );
    let error = Definition::from_toml(FILE, "version = ").expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("demo.v1.toml: line 1, column 11: "),
        "{error}"
    );
}

// The JSON Schema of the format.

#[test]
fn the_format_schema_accepts_the_shipped_definitions() {
    let validator = format_validator();
    for (file, text) in SHIPPED {
        assert_eq!(
            format_errors(&validator, text),
            Vec::<String>::new(),
            "{file}"
        );
    }
    assert_eq!(format_errors(&validator, BASE), Vec::<String>::new());
    assert_eq!(
        format_errors(&validator, BASE_REWRITTEN),
        Vec::<String>::new()
    );
}

#[test]
fn the_format_schema_refuses_what_the_format_refuses() {
    let validator = format_validator();
    for (text, place) in [
        (
            edit(
                "event = \"Reserved\"\n",
                "event = \"Reserved\"\ntimeout = 5\n",
            ),
            "/steps/0",
        ),
        (
            edit("command = \"demo.payment.charge.v1\"\n", ""),
            "/steps/1",
        ),
        (edit("participant = \"inventory\"\n", ""), "/steps/0"),
        (
            edit("command = \"demo.inventory.release.v1\"\n", ""),
            "/steps/0/undo",
        ),
        (
            edit("name = \"cancel\"", "name = \"cancel\"\npivot = true"),
            "/final_compensation",
        ),
        (
            edit(
                "retry = { max_attempts = 3 }",
                "retry = { max_attempts = 3, backoff_ms = 10 }",
            ),
            "/steps/1/retry",
        ),
        (edit("version = 1", "version = 1\ntimeout_ms = 5"), ""),
        (edit("version = 1", "version = \"1\""), "/version"),
        (edit("version = 1", "version = -1"), "/version"),
        (edit("saga_type = \"demo\"\n", ""), ""),
        (
            edit("timeout_ms = 30000", "timeout_ms = true"),
            "/steps/1/timeout_ms",
        ),
        (
            edit(
                "result_schema = { type = \"object\" }",
                "result_schema = \"object\"",
            ),
            "/steps/0/result_schema",
        ),
    ] {
        let errors = format_errors(&validator, &text);
        assert_eq!(errors.len(), 1, "{errors:?} in\n{text}");
        assert!(errors[0].starts_with(&format!("{place}: ")), "{errors:?}");
        assert!(Definition::from_toml(FILE, &text).is_err(), "{text}");
    }
}

/// The schema's property names of `definition`.
fn schema_fields(schema: &Value, definition: &str) -> BTreeSet<String> {
    schema
        .pointer(&format!("{definition}/properties"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{definition} has properties"))
        .keys()
        .cloned()
        .collect()
}

/// The field names of a serialised struct.
fn fields(value: impl serde::Serialize) -> BTreeSet<String> {
    serde_json::to_value(value)
        .expect("serialises")
        .as_object()
        .expect("a struct")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_format_schema_names_every_field_of_the_format() {
    let schema: Value = serde_json::from_str(FORMAT_SCHEMA).expect("JSON");
    // Every field given, so that each is written.
    let action = ActionDocument {
        name: "a".into(),
        participant: Some("p".into()),
        command: "c".into(),
        event: Some("E".into()),
        data: Some(json!({})),
        timeout_ms: Some(1),
        max_attempts: Some(1),
    };
    let step = StepDocument {
        name: "s".into(),
        participant: "p".into(),
        command: "c".into(),
        event: Some("E".into()),
        data: Some(json!({})),
        timeout_ms: Some(1),
        retry: Some(RetryDocument::default()),
        pivot: true,
        when: Some(Default::default()),
        group: Some("g".into()),
        late_reply: Some(Default::default()),
        result_schema: Some(json!({})),
        undo: Some(action.clone()),
    };
    let document = Document {
        saga_type: "t".into(),
        version: 1,
        description: "d".into(),
        business_key: Some("k".into()),
        input_schema: Some(json!({})),
        steps: vec![],
        final_compensation: Some(action.clone()),
    };
    assert_eq!(schema_fields(&schema, ""), fields(document));
    assert_eq!(schema_fields(&schema, "/$defs/step"), fields(step));
    assert_eq!(schema_fields(&schema, "/$defs/action"), fields(action));
    assert_eq!(
        schema_fields(&schema, "/$defs/retry"),
        fields(RetryDocument {
            max_attempts: Some(1),
            initial_backoff_ms: Some(1),
            max_backoff_ms: Some(1),
            jitter: Some(true),
        })
    );
    // Every object of the format refuses unknown fields, as serde does.
    for place in ["", "/$defs/step", "/$defs/action", "/$defs/retry"] {
        let object = schema.pointer(place).expect("defined");
        assert_eq!(object["additionalProperties"], json!(false), "{place}");
        assert_eq!(object["type"], json!("object"), "{place}");
    }
    let required = |place: &str| schema.pointer(&format!("{place}/required")).cloned();
    assert_eq!(required(""), Some(json!(["saga_type", "version"])));
    assert_eq!(
        required("/$defs/step"),
        Some(json!(["name", "participant", "command"]))
    );
    assert_eq!(required("/$defs/action"), Some(json!(["name", "command"])));
    assert_eq!(required("/$defs/retry"), None);
}

#[test]
fn fields_at_their_default_do_not_count_in_the_hash_but_data_does() {
    let base = "saga_type = \"h\"\nversion = 1\n[[steps]]\nname = \"a\"\nparticipant = \"p\"\ncommand = \"h.a.v1\"\n";
    let hash = |text: &str| Definition::from_toml("h.toml", text).unwrap().hash;
    let plain = hash(base);
    assert_eq!(hash(&format!("{base}pivot = false\n")), plain);
    assert_eq!(
        hash(&base.replace("version = 1\n", "version = 1\ndescription = \"\"\n")),
        plain
    );
    let nested = hash(&format!("{base}data = {{ x = {{}} }}\n"));
    assert_ne!(nested, hash(&format!("{base}data = {{}}\n")));
}
