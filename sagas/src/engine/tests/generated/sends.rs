//! What each recorded event sent, and the checks on it: commands go out
//! only for steps in hand, a parallel group is begun by one event, no
//! compensation command overtakes a forward step in hand, and a step runs
//! exactly when its condition holds.

use std::collections::BTreeSet;

use super::*;

/// One recorded event, the state it left and the commands it sent.
pub(super) struct Stage<'a> {
    pub event: &'a Event,
    pub after: DefinedSaga,
    pub sent: Vec<Command>,
}

/// The history folded again, event by event, keeping what each one sent;
/// together they sent exactly what the harness saw sent.
pub(super) fn replay<'a>(
    kind: &Arc<TypeVersions>,
    h: &'a Harness,
) -> Result<Vec<Stage<'a>>, TestCaseError> {
    let mut state = DefinedSaga::new(kind, h.state.id());
    let mut stages = Vec::with_capacity(h.history.len());
    for event in &h.history {
        state = state.evolve(event);
        let sent = state.commands(event);
        stages.push(Stage {
            event,
            after: state.clone(),
            sent,
        });
    }
    let sent: Vec<&Command> = stages.iter().flat_map(|s| &s.sent).collect();
    let seen: Vec<&Command> = h.commands.iter().collect();
    prop_assert_eq!(sent, seen);
    Ok(stages)
}

/// (3) Every command is the current attempt of a step in hand; a
/// compensation command goes out only once no forward step is in hand; a
/// group's members are all begun by one event, with nothing else in hand.
pub(super) fn check_sends(shape: &Shape, stages: &[Stage]) -> Result<(), TestCaseError> {
    // The event that sent each forward step's first attempt.
    let mut begun_at: BTreeMap<usize, usize> = BTreeMap::new();
    for (e, stage) in stages.iter().enumerate() {
        let in_hand = stage.after.in_hand();
        for c in &stage.sent {
            let p = in_hand.iter().find(|p| p.step == c.step);
            prop_assert!(
                p.is_some_and(|p| p.attempt == c.attempt && matches!(p.wait, Wait::Reply { .. })),
                "sent {} attempt {} with {:?} in hand",
                c.step,
                c.attempt,
                in_hand
            );
            prop_assert_eq!(
                &c.idempotency_key,
                &format!("{}:{}", stage.after.id(), c.step)
            );
            if !is_forward(&c.step) {
                prop_assert!(
                    in_hand.iter().all(|p| !matches!(p.role, Role::Forward(_))),
                    "{} sent while forward steps are in hand: {:?}",
                    c.step,
                    in_hand
                );
            }
        }
        let forward: Vec<&Command> = stage.sent.iter().filter(|c| is_forward(&c.step)).collect();
        let groups: BTreeSet<usize> = forward
            .iter()
            .map(|c| shape.group_of(index(&c.step)).start)
            .collect();
        prop_assert!(groups.len() <= 1, "one event sent {:?}", forward);
        let first: BTreeSet<usize> = forward
            .iter()
            .filter(|c| c.attempt == 1)
            .map(|c| index(&c.step))
            .collect();
        if !first.is_empty() {
            prop_assert_eq!(first.len(), forward.len(), "{:?}", forward);
            // Nothing else is in hand when a group (or a step) is begun.
            let held: BTreeSet<usize> = in_hand
                .iter()
                .filter(|p| matches!(p.role, Role::Forward(_)))
                .map(|p| index(&p.step))
                .collect();
            prop_assert_eq!(&held, &first);
            for i in first {
                prop_assert!(begun_at.insert(i, e).is_none(), "s{} begun twice", i);
            }
        }
    }
    for group in shape.groups() {
        let events: BTreeSet<usize> = group
            .clone()
            .filter_map(|i| begun_at.get(&i))
            .copied()
            .collect();
        prop_assert!(
            events.len() <= 1,
            "group {:?} begun by events {:?}",
            group,
            events
        );
    }
    Ok(())
}

/// A step runs exactly when its condition holds, is skipped otherwise —
/// never both — and is reached only once every step before its group
/// succeeded or was skipped; a group's members are reached together.
pub(super) fn check_conditions(
    shape: &Shape,
    h: &Harness,
    stages: &[Stage],
) -> Result<(), TestCaseError> {
    let n = shape.steps.len();
    let mut results: BTreeMap<usize, Value> = BTreeMap::new();
    for e in &h.history {
        if let EventKind::StepSucceeded {
            step,
            result: Some(r),
            ..
        } = &e.kind
        {
            if is_forward(step) {
                results.insert(index(step), r.clone());
            }
        }
    }
    let skipped: Vec<usize> = h.state.skipped().iter().map(|s| index(s)).collect();
    prop_assert!(
        skipped.windows(2).all(|w| w[0] < w[1]),
        "skipped {:?}",
        skipped
    );
    let commanded: BTreeSet<usize> = h
        .commands
        .iter()
        .filter(|c| is_forward(&c.step))
        .map(|c| index(&c.step))
        .collect();
    for &i in &commanded {
        prop_assert!(!skipped.contains(&i), "s{} both sent and skipped", i);
        prop_assert!(
            shape.runs(i, &results),
            "s{} sent though its condition {:?} fails",
            i,
            shape.steps[i].when
        );
    }
    for &i in &skipped {
        prop_assert!(
            !shape.runs(i, &results),
            "s{} skipped though its condition {:?} holds",
            i,
            shape.steps[i].when
        );
    }
    // Where each step was reached (sent or skipped), and where it was over
    // (done or skipped).
    let name = |i: usize| format!("s{i}");
    let reached_at = |i: usize| {
        stages.iter().position(|s| {
            s.sent.iter().any(|c| c.step == name(i))
                || s.after.skipped().contains(&name(i).as_str())
        })
    };
    let over_at = |i: usize| {
        stages.iter().position(|s| {
            s.after.done().contains(&name(i).as_str())
                || s.after.skipped().contains(&name(i).as_str())
        })
    };
    for i in 0..n {
        let Some(at) = reached_at(i) else { continue };
        let group = shape.group_of(i);
        for j in 0..group.start {
            prop_assert!(
                over_at(j).is_some_and(|o| o <= at),
                "s{} reached at event {} before s{} was over",
                i,
                at,
                j
            );
        }
        for j in group {
            prop_assert_eq!(reached_at(j), Some(at), "s{} and s{} reached apart", i, j);
        }
    }
    if h.state.status() == Status::Completed {
        let done: BTreeSet<usize> = h.state.done().iter().map(|s| index(s)).collect();
        for i in 0..n {
            prop_assert!(
                done.contains(&i) != skipped.contains(&i),
                "completed with s{} done: {}, skipped: {}",
                i,
                done.contains(&i),
                skipped.contains(&i)
            );
            prop_assert_eq!(done.contains(&i), shape.runs(i, &results));
        }
    }
    Ok(())
}
