//! What must hold at the end of each generated case.

use std::collections::BTreeSet;

use super::sends::Stage;
use super::*;

/// What the history says of one forward step so far.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// Its command is out: sent, and neither succeeded nor failed since.
    out: bool,
    /// An attempt of it timed out: it may have been applied.
    timed_out: bool,
    succeeded: bool,
}

/// How an operator's intervention just before `k` decided it, if one did.
fn intervention(h: &Harness, k: usize) -> Option<&ActionKind> {
    match k.checked_sub(1).map(|j| &h.history[j].kind) {
        Some(EventKind::OperatorIntervened { action, .. }) => Some(action),
        _ => None,
    }
}

fn declared_failed(h: &Harness, k: usize) -> bool {
    matches!(
        intervention(h, k),
        Some(ActionKind::Skip {
            assume: Assume::Failed
        })
    )
}

/// (a) Compensation is decided once, on a forward step's terminal failure
/// (`f`); its plan undoes, in this order: the members of `f`'s group in
/// reverse definition order — those that succeeded, whose command is out or
/// that timed out, and `f` itself when it may have been applied — then the
/// steps done before the group in reverse completion order, then the final
/// step. The group's members still out are awaited: a success keeps its
/// undo, a failure reply or a skip as failed removes it (unless an earlier
/// attempt timed out), a timeout keeps it; only then does the first
/// compensation command go out, and the plan runs in order. At the end of
/// a compensated saga the undos sent are exactly those of the steps that
/// succeeded or may have been applied (a member whose failure reply came
/// while it was awaited is not undone). Skipped steps are never undone;
/// undos read their steps' results.
pub(super) fn check_compensation(
    shape: &Shape,
    h: &Harness,
    stages: &[Stage],
) -> Result<(), TestCaseError> {
    let n = shape.steps.len();
    let mut seen = vec![Seen::default(); n];
    // Forward steps that succeeded before compensation, in that order.
    let mut succeeded: Vec<usize> = Vec::new();
    // The step whose failure decided compensation, and whether it may have
    // been applied.
    let mut decided: Option<(usize, bool)> = None;
    let mut plan: Vec<String> = Vec::new();
    let mut awaited: BTreeSet<usize> = BTreeSet::new();
    for (k, stage) in stages.iter().enumerate() {
        if let EventKind::StepFailed {
            step,
            cause,
            then: Then::Compensate { plan: got },
            ..
        } = &stage.event.kind
        {
            prop_assert!(is_forward(step), "{} compensated", step);
            let i = index(step);
            if decided.is_none() {
                let f = i;
                let doubt = seen[f].timed_out || seen[f].out;
                let in_doubt = match cause {
                    FailureCause::TimedOut => true,
                    FailureCause::Refused | FailureCause::Error => seen[f].timed_out,
                    FailureCause::DeadlineExceeded => doubt,
                    FailureCause::Operator => match intervention(h, k) {
                        Some(ActionKind::Compensate) => doubt,
                        // A skip as failed leaves an earlier timeout's doubt.
                        Some(ActionKind::Skip {
                            assume: Assume::Failed,
                        }) => seen[f].timed_out,
                        other => {
                            return Err(TestCaseError::fail(format!("{other:?} before {cause:?}")))
                        }
                    },
                };
                let group = shape.group_of(f);
                let planned = |m: &usize| match *m == f {
                    true => in_doubt,
                    false => seen[*m].succeeded || seen[*m].out || seen[*m].timed_out,
                };
                plan = group
                    .clone()
                    .rev()
                    .filter(planned)
                    .chain(
                        succeeded
                            .iter()
                            .rev()
                            .copied()
                            .filter(|i| !group.contains(i)),
                    )
                    .filter_map(|i| shape.undo_of(i))
                    .chain(shape.final_step.then(|| "final".to_owned()))
                    .collect();
                prop_assert_eq!(
                    got,
                    &plan,
                    "s{} failed ({:?}) after {:?}, with {:?}",
                    f,
                    cause,
                    succeeded,
                    seen
                );
                awaited = group.filter(|m| *m != f && seen[*m].out).collect();
                decided = Some((f, in_doubt));
            } else {
                // Only an awaited member of the failed group fails again.
                prop_assert!(
                    awaited.remove(&i),
                    "compensation decided again on {} ({:?}), awaiting {:?}",
                    step,
                    cause,
                    awaited
                );
                // A failure reply, or an operator's skip as failed, says it
                // was not applied unless an earlier attempt timed out.
                let declared = declared_failed(h, k);
                let applied = *cause == FailureCause::TimedOut || seen[i].timed_out;
                if !applied {
                    let undo = shape.undo_of(i);
                    plan.retain(|s| Some(s) != undo.as_ref());
                }
                prop_assert_eq!(
                    got,
                    &plan,
                    "awaited s{} failed ({:?}, declared failed: {})",
                    i,
                    cause,
                    declared
                );
            }
        }
        // The event's effect on the forward steps.
        match &stage.event.kind {
            EventKind::StepSucceeded { step, .. } if is_forward(step) => {
                let i = index(step);
                seen[i].out = false;
                seen[i].succeeded = true;
                if decided.is_none() {
                    succeeded.push(i);
                } else {
                    prop_assert!(
                        awaited.remove(&i),
                        "{} succeeded while compensating without being awaited",
                        step
                    );
                }
            }
            EventKind::StepFailed { step, cause, .. } if is_forward(step) => {
                let i = index(step);
                seen[i].out = false;
                seen[i].timed_out |= *cause == FailureCause::TimedOut;
            }
            _ => {}
        }
        for c in &stage.sent {
            if is_forward(&c.step) {
                let i = index(&c.step);
                // Once compensating, at most an awaited member is sent again.
                prop_assert!(
                    decided.is_none() || awaited.contains(&i),
                    "{} attempt {} sent while compensating",
                    c.step,
                    c.attempt
                );
                seen[i].out = true;
            } else {
                // (3) No compensation overtakes a member still awaited.
                prop_assert!(
                    decided.is_some() && awaited.is_empty(),
                    "{} sent while {:?} awaited",
                    c.step,
                    awaited
                );
            }
        }
    }

    let skipped: Vec<String> = h.state.skipped().iter().map(|s| s.to_string()).collect();
    for s in &skipped {
        let undo = shape.undo_of(index(s));
        prop_assert!(!plan.iter().any(|p| Some(p) == undo.as_ref()));
        prop_assert!(!h.commands.iter().any(|c| Some(&c.step) == undo.as_ref()));
    }
    let Some((f, in_doubt)) = decided else {
        prop_assert!(h.state.undone().is_empty());
        prop_assert!(h.commands.iter().all(|c| is_forward(&c.step)));
        return Ok(());
    };
    let names: Vec<String> = succeeded.iter().map(|i| format!("s{i}")).collect();
    prop_assert_eq!(
        h.state.done(),
        names,
        "nothing goes forward once compensating"
    );

    let undone = h.state.undone();
    prop_assert!(
        plan.starts_with(undone),
        "{:?} not a prefix of {:?}",
        undone,
        plan
    );
    let first_attempts: Vec<&String> = h
        .commands
        .iter()
        .filter(|c| !is_forward(&c.step) && c.attempt == 1)
        .map(|c| &c.step)
        .collect();
    prop_assert!(
        plan.iter().zip(&first_attempts).all(|(a, b)| a == *b)
            && first_attempts.len() <= plan.len(),
        "sent {:?} for plan {:?}",
        first_attempts,
        plan
    );
    if h.state.status() == Status::Compensated {
        prop_assert_eq!(undone, &plan[..]);
        prop_assert!(awaited.is_empty());
        // The undos sent: exactly those of the steps that succeeded or timed
        // out (a member whose failure reply came while it was awaited is not
        // undone), and of the failed step when it may have been applied.
        let applied: BTreeSet<String> = (0..n)
            .filter(|i| match *i == f {
                true => in_doubt,
                false => seen[*i].succeeded || seen[*i].timed_out,
            })
            .filter_map(|i| shape.undo_of(i))
            .collect();
        let sent: BTreeSet<String> = h
            .commands
            .iter()
            .filter(|c| c.step.starts_with('u'))
            .map(|c| c.step.clone())
            .collect();
        prop_assert_eq!(sent, applied, "{:?}", seen);
    }
    for c in h.commands.iter().filter(|c| c.step.starts_with('u')) {
        let forward = format!("s{}", index(&c.step));
        let result = h.history.iter().find_map(|e| match &e.kind {
            EventKind::StepSucceeded { step, result, .. } if *step == forward => result.clone(),
            _ => None,
        });
        let n = result
            .and_then(|r| r.get("n").cloned())
            .unwrap_or(Value::Null);
        prop_assert_eq!(&c.data, &json!({"id": "g-1", "n": n}));
    }
    Ok(())
}

/// Attempts of one step go 1, 2, …, and no timer sends one past the step's budget.
pub(super) fn check_attempts(
    shape: &Shape,
    policy: &Policy,
    h: &Harness,
) -> Result<(), TestCaseError> {
    let budget = |step: &str| match step.as_bytes()[0] {
        b's' => shape.steps[index(step)]
            .attempts
            .unwrap_or(policy.forward.max_attempts),
        b'u' => shape.steps[index(step)]
            .undo_attempts
            .unwrap_or(policy.compensation.max_attempts),
        _ => policy.compensation.max_attempts,
    };
    let mut steps: Vec<&str> = h.commands.iter().map(|c| c.step.as_str()).collect();
    steps.sort();
    steps.dedup();
    for step in steps {
        let attempts: Vec<u32> = h
            .commands
            .iter()
            .filter(|c| c.step == step)
            .map(|c| c.attempt)
            .collect();
        prop_assert!(
            attempts.iter().enumerate().all(|(i, a)| *a == i as u32 + 1),
            "{}: {:?}",
            step,
            attempts
        );
    }
    for (i, e) in h.history.iter().enumerate() {
        let by_operator =
            i > 0 && matches!(h.history[i - 1].kind, EventKind::OperatorIntervened { .. });
        if let EventKind::StepRetried { step, attempt } = &e.kind {
            prop_assert!(
                by_operator || *attempt <= budget(step),
                "{} attempt {} over budget",
                step,
                attempt
            );
        }
    }
    Ok(())
}
