//! Invariants over random input sequences.

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Reply(usize, u32, u8),
    Wake(i64),
    Repeat(usize),
    Act(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..Step::ALL.len(), 1u32..4, 0u8..4).prop_map(|(s, a, o)| Op::Reply(s, a, o)),
        2 => (0i64..3_000).prop_map(Op::Wake),
        1 => (0usize..64).prop_map(Op::Repeat),
        1 => (0u8..6).prop_map(Op::Act),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any sequence of replies (duplicates, late, out of order, for the wrong
    /// step) and timer firings keeps the saga's invariants.
    #[test]
    fn any_input_sequence_keeps_the_invariants(ops in proptest::collection::vec(op(), 0..60)) {
        let mut h = Harness::started();
        let mut inputs: Vec<Input<Value>> = Vec::new();
        let mut terminal_at: Option<usize> = None;
        for op in ops {
            let input = match op {
                Op::Reply(s, attempt, o) => {
                    h.now += Duration::milliseconds(5);
                    let outcome = match o {
                        0 | 1 => Outcome::Succeeded,
                        2 => refused("no"),
                        _ => failed("flaky"),
                    };
                    Input::Reply(Reply { step: Step::ALL[s].name().into(), attempt, outcome, at: h.now, result: None })
                }
                Op::Wake(ms) => {
                    h.now += Duration::milliseconds(ms);
                    Input::Wake { now: h.now }
                }
                Op::Act(a) => {
                    h.now += Duration::milliseconds(5);
                    let kind = match a {
                        0 => ActionKind::Retry,
                        1 => ActionKind::Skip { assume: Assume::Succeeded },
                        2 => ActionKind::Skip { assume: Assume::Failed },
                        3 => ActionKind::Compensate,
                        4 => ActionKind::Resume,
                        _ => ActionKind::Cancel,
                    };
                    let action = Action { kind, operator: "op".into(), reason: "test".into() };
                    Input::Operator { action, now: h.now }
                }
                Op::Repeat(i) if !inputs.is_empty() => inputs[i % inputs.len()].clone(),
                Op::Repeat(_) => continue,
            };
            inputs.push(input.clone());
            let expected = terminal_at.map(|_| terminal_refusal(h.state.status(), &input));
            let result = h.when(input);
            if let (Some(at), Some(expected)) = (terminal_at, expected) {
                prop_assert_eq!(result, Err(expected), "input after terminal at {}", at);
            }
            if h.state.status().is_terminal() && terminal_at.is_none() {
                terminal_at = Some(h.history.len());
            }
        }

        // Folding the history as stored (JSON) rebuilds the same state.
        let stored = serde_json::to_string(&h.history).unwrap();
        let stored: Vec<Event> = serde_json::from_str(&stored).unwrap();
        let rebuilt = stored.iter().fold(DefinedSaga::new(&order_kind(), h.state.id()), |s, e| s.evolve(e));
        prop_assert_eq!(&rebuilt, &h.state);

        // No compensation step succeeds twice, and compensation happens once.
        let undone = h.state.undone();
        for s in undone {
            prop_assert_eq!(undone.iter().filter(|x| *x == s).count(), 1);
        }
        let plans = h.history.iter().filter(|e| matches!(&e.kind, EventKind::StepFailed { then: Then::Compensate { .. }, .. })).count();
        prop_assert!(plans <= 1);

        // Compensation undoes completed forward steps in reverse order (after the
        // failed step's own undo when it may have been applied), then cancels; the
        // steps are undone in the plan's order.
        let plan = h.history.iter().find_map(|e| match &e.kind {
            EventKind::StepFailed { then: Then::Compensate { plan }, .. } => Some(plan.clone()),
            _ => None,
        });
        if let Some(plan) = plan {
            let reversed: Vec<String> = h.state.done().iter().rev()
                .filter_map(|d| Step::parse(d).unwrap().undo())
                .map(|s| s.name().to_owned())
                .collect();
            prop_assert_eq!(plan.last().map(String::as_str), Some(Step::CancelOrder.name()));
            let undos = &plan[..plan.len() - 1];
            prop_assert!(undos.ends_with(&reversed), "{:?} vs {:?}", undos, reversed);
            prop_assert!(undos.len() <= reversed.len() + 1);
            prop_assert!(plan.starts_with(undone), "{:?} not a prefix of {:?}", undone, plan);
            if h.state.status() == Status::Compensated {
                prop_assert_eq!(undone, &plan[..]);
            }
        } else {
            prop_assert!(undone.is_empty());
        }

        // Commands of one step are attempts 1, 2, … sharing one key, `<saga id>:<step>`.
        for step in Step::ALL {
            let sent: Vec<&Command> = h.commands.iter().filter(|c| c.step == step.name()).collect();
            let attempts: Vec<u32> = sent.iter().map(|c| c.attempt).collect();
            prop_assert!(attempts.iter().enumerate().all(|(i, a)| *a == i as u32 + 1), "{:?}: {:?}", step, attempts);
            let key = format!("{}:{}", h.state.id(), step.name());
            for c in sent {
                prop_assert_eq!(&c.idempotency_key, &key);
            }
        }
    }
}
