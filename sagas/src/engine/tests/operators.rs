//! Operator interventions and what `explain` tells them.

use super::*;

#[test]
fn resume_sends_the_failed_compensation_again_and_records_who_and_why() {
    let mut h = suspended();
    let events = h.act(ActionKind::Resume).unwrap();
    let EventKind::OperatorIntervened {
        action,
        operator,
        reason,
    } = &events[0].kind
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (*action, operator.as_str(), reason.as_str()),
        (ActionKind::Resume, "ops@example.com", "incident 42")
    );
    assert_eq!(
        events[1].kind,
        EventKind::StepRetried {
            step: Step::ReleaseInventory.name().into(),
            attempt: 4
        }
    );
    assert_eq!(h.state.status(), Status::Compensating);
    let last = h.commands.last().unwrap();
    assert_eq!((last.step.as_str(), last.attempt), ("release-inventory", 4));
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn an_operator_retry_that_fails_again_suspends_again() {
    let mut h = suspended();
    h.act(ActionKind::Retry).unwrap();
    h.reply(Step::ReleaseInventory, 4, failed("still locked"))
        .unwrap();
    assert_eq!(h.state.status(), Status::Suspended);
}

#[test]
fn skipping_a_suspended_compensation_as_done_moves_on() {
    let mut h = suspended();
    let sent = h.commands.len();
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.state.undone(), names(&[Step::ReleaseInventory]));
    assert_eq!(h.commands.len(), sent + 1);
    assert_eq!(h.commands.last().unwrap().step, "cancel-order");
    assert!(matches!(
        h.act(ActionKind::Skip { assume: Assume::Failed }),
        Err(Rejection::Invalid(ref e)) if e[0].field == "assume"
    ));
}

#[test]
fn skipping_a_forward_step_as_succeeded_continues_without_its_participant() {
    let mut h = Harness::started();
    h.act(ActionKind::Skip {
        assume: Assume::Succeeded,
    })
    .unwrap();
    assert_eq!(h.state.done(), names(&[Step::ReserveInventory]));
    assert_eq!(h.command_steps(), ["reserve-inventory", "charge-payment"]);
    assert_eq!(
        h.event_names(),
        ["SagaStarted", "OperatorIntervened", "InventoryReserved"]
    );
}

#[test]
fn skipping_a_forward_step_as_failed_compensates_without_its_undo() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.act(ActionKind::Skip {
        assume: Assume::Failed,
    })
    .unwrap();
    assert_eq!(h.state.status(), Status::Compensating);
    assert_eq!(&h.command_steps()[2..], ["release-inventory"]);
}

#[test]
fn compensate_now_also_undoes_the_step_in_flight() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    h.act(ActionKind::Compensate).unwrap();
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(
        h.state.undone(),
        names(&[
            Step::RefundPayment,
            Step::ReleaseInventory,
            Step::CancelOrder
        ])
    );
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn cancel_stops_the_saga_without_compensation() {
    let mut h = Harness::started();
    h.ok(Step::ReserveInventory);
    let sent = h.commands.len();
    h.act(ActionKind::Cancel).unwrap();
    assert_eq!(h.state.status(), Status::Cancelled);
    assert_eq!(h.commands.len(), sent, "nothing is sent on cancel");
    assert_eq!(h.state.view().step, None);
    assert!(matches!(
        h.reply(Step::ChargePayment, 1, Outcome::Succeeded),
        Err(Rejection::Terminal(Status::Cancelled))
    ));
}

#[test]
fn explain_says_what_a_suspended_saga_waits_for() {
    let h = suspended();
    let e = h.state.explain();
    let w = e.waiting.expect("a suspended saga waits");
    assert_eq!(
        (w.step.as_str(), w.participant.as_str(), w.on),
        ("release-inventory", "inventory", WaitingOn::Operator)
    );
    assert_eq!((w.attempt, w.max_attempts), (3, 3));
    assert_eq!(e.progress["compensations_left"][0], "release-inventory");
}

#[test]
fn explain_gives_the_reply_deadline_and_nothing_once_terminal() {
    let mut h = Harness::started();
    let w = h.state.explain().waiting.unwrap();
    assert_eq!(
        w.on,
        WaitingOn::Reply {
            deadline: w.since + Duration::milliseconds(1_000)
        }
    );
    assert_eq!((w.attempt, w.max_attempts), (1, 2));
    h.act(ActionKind::Cancel).unwrap();
    assert_eq!(h.state.explain().waiting, None);
}
