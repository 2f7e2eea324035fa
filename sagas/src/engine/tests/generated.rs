//! Properties over generated definitions: 1–6 forward steps, each with or
//! without an undo and a retry budget of its own, maybe a pivot, maybe a
//! final compensation, runs of 2–3 steps in parallel groups (never with the
//! pivot), and conditions on random boolean flags of the start input or on
//! what an earlier step's reply returned; driven by random replies (to any
//! step in hand), timer firings and interventions.

mod checks;
mod regressions;
mod sends;

use std::collections::BTreeMap;
use std::ops::Range;

use super::*;
use crate::definition::{ActionDocument, ConditionDocument, Document, RetryDocument, StepDocument};
use checks::{check_attempts, check_compensation};
use sends::{check_conditions, check_sends, replay};

/// Where a condition reads its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// `${input.flags.N}`: `true`, `false` or `null` (absent) in the input.
    Flag(usize),
    /// `${s<j>.result.go}`: set (or not) by the reply of an earlier step.
    Result(usize),
}

/// The one test of a condition.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    Equals(bool),
    NotEquals(bool),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct When {
    source: Source,
    check: Check,
}

#[derive(Debug, Clone)]
struct StepShape {
    undo: bool,
    attempts: Option<u32>,
    undo_attempts: Option<u32>,
    /// Its parallel group: the index of the group's first step.
    group: Option<usize>,
    when: Option<When>,
}

#[derive(Debug, Clone)]
struct Shape {
    steps: Vec<StepShape>,
    pivot: Option<usize>,
    final_step: bool,
    /// Each success named (`S0Done`), or all the default `StepSucceeded`.
    named_events: bool,
    /// The start input's `flags`, `None` written as `null`.
    flags: Vec<Option<bool>>,
}

impl Shape {
    /// The forward steps sent together with step `i` (its group, or itself).
    fn group_of(&self, i: usize) -> Range<usize> {
        match self.steps[i].group {
            None => i..i + 1,
            Some(start) => {
                let len = self.steps[start..]
                    .iter()
                    .take_while(|s| s.group == Some(start))
                    .count();
                start..start + len
            }
        }
    }

    /// Every parallel group, in order.
    fn groups(&self) -> Vec<Range<usize>> {
        let mut groups = Vec::new();
        let mut i = 0;
        while i < self.steps.len() {
            let g = self.group_of(i);
            i = g.end;
            if g.len() > 1 {
                groups.push(g);
            }
        }
        groups
    }

    fn undo_of(&self, i: usize) -> Option<String> {
        self.steps[i].undo.then(|| format!("u{i}"))
    }

    fn input(&self) -> Value {
        json!({"id": "g-1", "flags": self.flags})
    }

    /// Whether step `i` runs, given what the forward steps' replies returned
    /// (by index; a step that returned nothing has no entry).
    fn runs(&self, i: usize, results: &BTreeMap<usize, Value>) -> bool {
        let Some(when) = self.steps[i].when else {
            return true;
        };
        let value = match when.source {
            Source::Flag(k) => self.flags[k].map(Value::Bool),
            Source::Result(j) => results.get(&j).and_then(|r| r.get("go")).cloned(),
        }
        .filter(|v| !v.is_null());
        match when.check {
            Check::Equals(b) => value == Some(Value::Bool(b)),
            Check::NotEquals(b) => value != Some(Value::Bool(b)),
            Check::Exists(wanted) => value.is_some() == wanted,
        }
    }
}

/// A step as drawn, before groups and conditions are fitted to its place.
type RawStep = (
    bool,
    Option<u32>,
    Option<u32>,
    u8,
    Option<(bool, prop::sample::Index, u8)>,
);

fn shape() -> impl Strategy<Value = Shape> {
    let step = (
        any::<bool>(),
        prop::option::of(1u32..4),
        prop::option::of(1u32..3),
        0u8..6,
        prop::option::weighted(0.4, (any::<bool>(), any::<prop::sample::Index>(), 0u8..6)),
    );
    (
        prop::collection::vec(step, 1..=6),
        any::<Option<prop::sample::Index>>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::option::of(any::<bool>()), 6),
    )
        .prop_map(|(raw, pivot, final_step, named_events, flags)| {
            let pivot = pivot.map(|i| i.index(raw.len()));
            build(&raw, pivot, final_step, named_events, flags)
        })
}

fn build(
    raw: &[RawStep],
    pivot: Option<usize>,
    final_step: bool,
    named_events: bool,
    flags: Vec<Option<bool>>,
) -> Shape {
    let n = raw.len();
    // Runs of 2–3 steps form a group where they fit and hold no pivot.
    let mut group = vec![None; n];
    let mut i = 0;
    while i < n {
        let len = match raw[i].3 {
            3 | 4 => 2,
            5 => 3,
            _ => 1,
        };
        let run = i..i + len;
        if len > 1 && run.end <= n && !pivot.is_some_and(|p| run.contains(&p)) {
            for j in run {
                group[j] = Some(i);
            }
            i += len;
        } else {
            i += 1;
        }
    }
    let steps = raw
        .iter()
        .enumerate()
        .map(|(i, (undo, attempts, undo_attempts, _, when))| {
            // A step reads only the results of the steps before its group.
            let before = group[i].unwrap_or(i);
            let when = when.map(|(on_result, at, check)| When {
                source: if on_result && before > 0 {
                    Source::Result(at.index(before))
                } else {
                    Source::Flag(at.index(flags.len()))
                },
                check: match check {
                    0 | 1 => Check::Equals(true),
                    2 => Check::Equals(false),
                    3 => Check::NotEquals(true),
                    4 => Check::Exists(true),
                    _ => Check::Exists(false),
                },
            });
            StepShape {
                undo: *undo,
                attempts: *attempts,
                undo_attempts: *undo_attempts,
                group: group[i],
                when,
            }
        })
        .collect();
    Shape {
        steps,
        pivot,
        final_step,
        named_events,
        flags,
    }
}

fn condition(when: &When) -> ConditionDocument {
    let value = match when.source {
        Source::Flag(k) => format!("${{input.flags.{k}}}"),
        Source::Result(j) => format!("${{s{j}.result.go}}"),
    };
    let mut doc = ConditionDocument {
        value,
        ..ConditionDocument::default()
    };
    match when.check {
        Check::Equals(b) => doc.equals = Some(json!(b)),
        Check::NotEquals(b) => doc.not_equals = Some(json!(b)),
        Check::Exists(b) => doc.exists = Some(b),
    }
    doc
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
        when: s.when.as_ref().map(condition),
        group: s.group.map(|g| format!("g{g}")),
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

fn is_forward(step: &str) -> bool {
    step.starts_with('s')
}

#[derive(Debug, Clone)]
enum Op {
    /// One of the steps in hand (the `usize` picks which) answers its
    /// current attempt: 0–2 succeeded, with a result unless 2 (carrying
    /// `go` when given); 3 refused; 4–7 failed.
    Answer(u8, usize, Option<bool>),
    /// A reply for any step and attempt: late, duplicate or foreign.
    Reply(usize, u32, u8),
    Wake(i64),
    Act(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..8, 0usize..3, prop::option::of(any::<bool>()))
            .prop_map(|(o, k, go)| Op::Answer(o, k, go)),
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
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_sagas_keep_their_invariants(
        shape in shape(),
        policy in generated_policy(),
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let kind = kind(&shape);
        let all: Vec<String> = kind.newest().actions().map(|a| a.name.clone()).collect();
        let mut h = Harness::of(&kind);
        h.start(shape.input(), policy.clone());
        for (n, op) in ops.into_iter().enumerate() {
            h.now += Duration::milliseconds(5);
            let input = match op {
                Op::Answer(o, k, go) => {
                    let in_hand = h.state.in_hand();
                    if in_hand.is_empty() {
                        continue;
                    }
                    let p = &in_hand[k % in_hand.len()];
                    let result = (o < 2).then(|| match go {
                        Some(go) => json!({"n": n, "go": go}),
                        None => json!({"n": n}),
                    });
                    Input::Reply(Reply { step: p.step.clone(), attempt: p.attempt, outcome: outcome(o), at: h.now, result })
                }
                Op::Reply(s, attempt, o) => {
                    let step = all.get(s).cloned().unwrap_or_else(|| "elsewhere".into());
                    let result = Some(json!({"n": n, "go": o == 0}));
                    Input::Reply(Reply { step, attempt, outcome: outcome(o), at: h.now, result })
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

        let stages = replay(&kind, &h)?;
        check_sends(&shape, &stages)?;
        check_conditions(&shape, &h, &stages)?;
        check_compensation(&shape, &h, &stages)?;
        check_attempts(&shape, &policy, &h)?;
    }
}
