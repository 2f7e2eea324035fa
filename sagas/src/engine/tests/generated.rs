//! Properties over generated definitions: 1–6 forward steps, each with or
//! without an undo and a retry budget of its own, maybe a pivot, maybe a
//! final compensation; driven by random replies, timer firings and
//! interventions.

mod checks;

use super::*;
use crate::definition::{ActionDocument, Document, RetryDocument, StepDocument};
use checks::{check_attempts, check_compensation};

#[derive(Debug, Clone)]
struct StepShape {
    undo: bool,
    attempts: Option<u32>,
    undo_attempts: Option<u32>,
}

#[derive(Debug, Clone)]
struct Shape {
    steps: Vec<StepShape>,
    pivot: Option<usize>,
    final_step: bool,
    /// Each success named (`S0Done`), or all the default `StepSucceeded`.
    named_events: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    let step = (
        any::<bool>(),
        prop::option::of(1u32..4),
        prop::option::of(1u32..3),
    )
        .prop_map(|(undo, attempts, undo_attempts)| StepShape {
            undo,
            attempts,
            undo_attempts,
        });
    (
        prop::collection::vec(step, 1..=6),
        any::<Option<prop::sample::Index>>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(steps, pivot, final_step, named_events)| Shape {
            pivot: pivot.map(|i| i.index(steps.len())),
            steps,
            final_step,
            named_events,
        })
}

fn document(shape: &Shape) -> Document {
    let event = |name: String| shape.named_events.then_some(name);
    let steps = shape.steps.iter().enumerate().map(|(i, s)| StepDocument {
        name: format!("s{i}"),
        participant: format!("p{i}"),
        command: format!("gen.s{i}.v1"),
        event: event(format!("S{i}Done")),
        data: Some(json!({"id": "${input.id}", "step": i})),
        timeout_ms: None,
        retry: s.attempts.map(|n| RetryDocument {
            max_attempts: Some(n),
            ..RetryDocument::default()
        }),
        pivot: shape.pivot == Some(i),
        when: None,
        group: None,
        late_reply: None,
        result_schema: None,
        undo: s.undo.then(|| ActionDocument {
            name: format!("u{i}"),
            participant: None,
            command: format!("gen.u{i}.v1"),
            event: event(format!("U{i}Done")),
            // An undo reads what its own step returned.
            data: Some(json!({"id": "${input.id}", "n": format!("${{s{i}.result.n}}")})),
            timeout_ms: None,
            max_attempts: s.undo_attempts,
        }),
    });
    Document {
        saga_type: "generated".into(),
        version: 1,
        description: String::new(),
        business_key: None,
        input_schema: None,
        steps: steps.collect(),
        final_compensation: shape.final_step.then(|| ActionDocument {
            name: "final".into(),
            participant: Some("pf".into()),
            command: "gen.final.v1".into(),
            event: event("FinalDone".into()),
            data: Some(json!({"id": "${input.id}"})),
            timeout_ms: None,
            max_attempts: None,
        }),
    }
}

fn kind(shape: &Shape) -> Arc<TypeVersions> {
    let definition =
        Definition::from_document("generated", document(shape)).unwrap_or_else(|e| panic!("{e}"));
    let mut catalog = Catalog::default();
    catalog.add(definition).unwrap();
    catalog.get("generated").unwrap().clone()
}

/// The index of forward step `s<i>` or of undo `u<i>`.
fn index(step: &str) -> usize {
    step[1..].parse().unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// The step in hand answers its current attempt (0–2 succeeded, with a
    /// result unless 2; 3 refused; 4–7 failed).
    Answer(u8),
    /// A reply for any step and attempt: late, duplicate or foreign.
    Reply(usize, u32, u8),
    Wake(i64),
    Act(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..8).prop_map(Op::Answer),
        1 => (0usize..14, 1u32..5, 0u8..8).prop_map(|(s, a, o)| Op::Reply(s, a, o)),
        4 => (0i64..2_500).prop_map(Op::Wake),
        1 => (0u8..6).prop_map(Op::Act),
    ]
}

fn outcome(o: u8) -> Outcome {
    match o {
        0..=2 => Outcome::Succeeded,
        3 => refused("no"),
        _ => failed("flaky"),
    }
}

fn generated_policy() -> impl Strategy<Value = Policy> {
    (any::<bool>(), prop_oneof![Just(0u64), 1_000u64..8_000]).prop_map(|(jitter, deadline)| {
        let mut p = policy();
        p.forward.jitter = jitter;
        p.compensation.jitter = jitter;
        p.saga_deadline_ms = deadline;
        p
    })
}

fn is_compensate(event: &Event) -> bool {
    matches!(then_of(event), Some(Then::Compensate { .. }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_sagas_keep_their_invariants(
        shape in shape(),
        policy in generated_policy(),
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let kind = kind(&shape);
        let all: Vec<String> = kind.newest().actions().map(|a| a.name.clone()).collect();
        let mut h = Harness::of(&kind);
        h.start(json!({"id": "g-1"}), policy.clone());
        for (n, op) in ops.into_iter().enumerate() {
            h.now += Duration::milliseconds(5);
            let input = match op {
                Op::Answer(o) => {
                    let Some(p) = h.state.pending() else { continue };
                    let result = (o < 2).then(|| json!({"n": n}));
                    Input::Reply(Reply { step: p.step.clone(), attempt: p.attempt, outcome: outcome(o), at: h.now, result })
                }
                Op::Reply(s, attempt, o) => {
                    let step = all.get(s).cloned().unwrap_or_else(|| "elsewhere".into());
                    Input::Reply(Reply { step, attempt, outcome: outcome(o), at: h.now, result: Some(json!({"n": n})) })
                }
                Op::Wake(ms) => {
                    h.now += Duration::milliseconds(ms);
                    Input::Wake { now: h.now }
                }
                Op::Act(a) => {
                    let action = Action { kind: every_action()[a as usize], operator: "op".into(), reason: "test".into() };
                    Input::Operator { action, now: h.now }
                }
            };
            let before = h.state.clone();
            let (recorded, sent) = (h.history.len(), h.commands.len());
            let result = h.when(input.clone());
            let (events, commands) = (&h.history[recorded..], &h.commands[sent..]);

            // (b) Nothing is decided or sent once terminal.
            if before.status().is_terminal() {
                prop_assert_eq!(result, Err(terminal_refusal(before.status(), &input)));
                prop_assert!(events.is_empty() && commands.is_empty());
            }
            if h.state.status().is_terminal() {
                prop_assert!(commands.is_empty(), "sent {:?} on becoming {}", commands, h.state.status());
            }
            // Whatever is sent is the step in hand's current attempt.
            for c in commands {
                let p = h.state.pending().unwrap();
                prop_assert_eq!((&c.step, c.attempt), (&p.step, p.attempt));
                prop_assert_eq!(&c.idempotency_key, &format!("{}:{}", h.state.id(), c.step));
            }
            // (d) Past the pivot there is no going back.
            if before.past_pivot() {
                prop_assert!(!before.allowed_actions().contains(&"compensate"));
                prop_assert!(!events.iter().any(is_compensate), "{:?}", events);
                prop_assert!(!matches!(h.state.status(), Status::Compensating | Status::Compensated));
                prop_assert!(h.state.past_pivot());
            }
        }

        // (c) Folding the recorded events again gives the live state, directly
        // and through their stored (JSON) form.
        let folded = h.history.iter().fold(DefinedSaga::new(&kind, h.state.id()), |s, e| s.evolve(e));
        prop_assert_eq!(&folded, &h.state);
        prop_assert_eq!(&h.rebuilt(&kind), &h.state);

        // (d) Over the whole history: no compensation after the pivot succeeded.
        let pivot = shape.pivot.map(|i| format!("s{i}"));
        let pivoted = h.history.iter().position(|e| {
            matches!(&e.kind, EventKind::StepSucceeded { step, .. } if Some(step) == pivot.as_ref())
        });
        if let Some(at) = pivoted {
            prop_assert!(!h.history[at..].iter().any(is_compensate));
        }

        check_compensation(&shape, &h)?;
        check_attempts(&shape, &policy, &h)?;
    }
}
