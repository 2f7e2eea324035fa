//! Rules that cannot be used, and rules read from TOML.

use serde_json::json;

use super::*;

#[test]
fn invalid_rules_are_refused_with_their_index() {
    let two = {
        let mut r = with("a", "starts_with", json!("x"), "never");
        r.above = Some(json!(1));
        r
    };
    let mut no_field = rule("never");
    no_field.equals = Some(json!(1));
    let mut no_matcher = rule("never");
    no_matcher.field = Some("a".into());
    let mut reason_on_success = rule("succeed");
    reason_on_success.reason = Some("why".into());
    let mut result_on_refusal = rule("refuse");
    result_on_refusal.result = Some(json!({}));
    let mut result_not_object = rule("succeed");
    result_not_object.result = Some(json!("x"));
    let mut value_without_field = rule("refuse");
    value_without_field.reason = Some("bad {value}".into());
    let mut no_participant = rule("never");
    no_participant.participant = String::new();
    let cases = [
        (rule("hang"), RuleProblem::UnknownAnswer("hang".into())),
        (rule(""), RuleProblem::MissingAnswer),
        (no_participant, RuleProblem::MissingParticipant),
        (two, RuleProblem::TwoMatchers("starts_with", "above")),
        (no_field, RuleProblem::MatcherWithoutField("equals")),
        (no_matcher, RuleProblem::FieldWithoutMatcher),
        (
            with("a", "above", json!("1"), "never"),
            RuleProblem::NotANumber("above"),
        ),
        (
            with("a", "below", json!([]), "never"),
            RuleProblem::NotANumber("below"),
        ),
        (
            with("a", "starts_with", json!(1), "never"),
            RuleProblem::NotAString("starts_with"),
        ),
        (
            with("a[x]", "equals", json!(1), "never"),
            RuleProblem::BadField {
                field: "a[x]".into(),
                why: "`[…]` holds `*` or an index",
            },
        ),
        (
            reason_on_success,
            RuleProblem::ReasonNotAllowed("succeed".into()),
        ),
        (
            result_on_refusal,
            RuleProblem::ResultNotAllowed("refuse".into()),
        ),
        (result_not_object, RuleProblem::ResultNotAnObject),
        (value_without_field, RuleProblem::ValueWithoutField),
    ];
    for (bad, problem) in cases {
        let settings = SimulatorSettings {
            rules: vec![rule("never"), bad],
            ..SimulatorSettings::default()
        };
        let err = settings.validate().unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.problem, problem);
        assert!(err.to_string().starts_with("simulator.rules[1]: "), "{err}");
    }
}

#[test]
fn rules_are_read_from_toml_and_unknown_keys_refused() {
    let settings: SimulatorSettings = toml::from_str(
        "[[rules]]\nparticipant = \"payment\"\nfield = \"amount_cents\"\nabove = 5\n\
         answer = \"refuse\"\nreason = \"too much: {value}\"\n",
    )
    .unwrap();
    let r = Rules::new(&settings).unwrap();
    let c = command(
        "payment",
        "order.payment.charge.v1",
        json!({ "amount_cents": 6 }),
    );
    assert_eq!(r.answer(&c, false), refused("too much: 6"));

    let typo = "[[rules]]\nparticipant = \"payment\"\nanswer = \"never\"\nstarts_wth = \"x\"\n";
    let err = toml::from_str::<SimulatorSettings>(typo).unwrap_err();
    assert!(err.to_string().contains("starts_wth"), "{err}");
}
