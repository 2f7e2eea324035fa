//! What must hold at the end of each generated case.

use super::*;

/// (a) Compensation undoes exactly the forward steps that succeeded (and
/// the failed step when it may have been applied), in reverse order, then
/// the final step; it runs in that order and the undos read their steps'
/// results.
pub(super) fn check_compensation(shape: &Shape, h: &Harness) -> Result<(), TestCaseError> {
    let undo_of = |step: &str| {
        shape.steps[index(step)]
            .undo
            .then(|| format!("u{}", index(step)))
    };
    let decided: Vec<usize> = (0..h.history.len())
        .filter(|k| is_compensate(&h.history[*k]))
        .collect();
    prop_assert!(decided.len() <= 1, "compensation decided twice");
    let Some(&k) = decided.first() else {
        prop_assert!(h.state.undone().is_empty());
        prop_assert!(h.commands.iter().all(|c| c.step.starts_with('s')));
        return Ok(());
    };
    let EventKind::StepFailed {
        step: failed,
        cause,
        then: Then::Compensate { plan },
        ..
    } = &h.history[k].kind
    else {
        unreachable!()
    };
    let before = &h.history[..k];
    let succeeded: Vec<&str> = before
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepSucceeded { step, .. } if step.starts_with('s') => Some(step.as_str()),
            _ => None,
        })
        .collect();
    let timed_out = before.iter().any(|e| {
        matches!(&e.kind, EventKind::StepFailed { step, cause: FailureCause::TimedOut, .. } if step == failed)
    });
    // The failed step's command is out unless it waits for a retry.
    let in_flight = !before
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::StepFailed { step, then, .. } if step == failed => {
                Some(matches!(then, Then::Retry { .. }))
            }
            EventKind::StepRetried { step, .. } if step == failed => Some(false),
            _ => None,
        })
        .unwrap_or(false);
    let uncertain = match cause {
        FailureCause::TimedOut => true,
        FailureCause::Refused | FailureCause::Error => timed_out,
        FailureCause::DeadlineExceeded => timed_out || in_flight,
        FailureCause::Operator => match &h.history[k - 1].kind {
            EventKind::OperatorIntervened {
                action: ActionKind::Compensate,
                ..
            } => timed_out || in_flight,
            EventKind::OperatorIntervened {
                action:
                    ActionKind::Skip {
                        assume: Assume::Failed,
                    },
                ..
            } => false,
            other => return Err(TestCaseError::fail(format!("{other:?} before {cause:?}"))),
        },
    };
    let mut expected: Vec<String> = Vec::new();
    if uncertain {
        expected.extend(undo_of(failed));
    }
    expected.extend(succeeded.iter().rev().filter_map(|s| undo_of(s)));
    expected.extend(shape.final_step.then(|| "final".to_owned()));
    prop_assert_eq!(
        plan,
        &expected,
        "failed {} ({:?}) after {:?}",
        failed,
        cause,
        succeeded
    );
    prop_assert_eq!(
        h.state.done(),
        succeeded,
        "nothing goes forward once compensating"
    );

    let undone = h.state.undone();
    prop_assert!(
        plan.starts_with(undone),
        "{:?} not a prefix of {:?}",
        undone,
        plan
    );
    if h.state.status() == Status::Compensated {
        prop_assert_eq!(undone, &plan[..]);
    }
    let first_attempts: Vec<&String> = h
        .commands
        .iter()
        .filter(|c| !c.step.starts_with('s') && c.attempt == 1)
        .map(|c| &c.step)
        .collect();
    prop_assert!(
        plan.iter().zip(&first_attempts).all(|(a, b)| a == *b)
            && first_attempts.len() <= plan.len(),
        "sent {:?} for plan {:?}",
        first_attempts,
        plan
    );
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
