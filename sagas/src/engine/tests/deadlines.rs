//! Step timeouts and the saga's overall deadline.

use super::*;

fn with_deadline(forward_attempts: u32, deadline_ms: u64) -> Harness {
    let mut h = Harness::new();
    let mut p = policy();
    p.forward.max_attempts = forward_attempts;
    p.saga_deadline_ms = deadline_ms;
    h.start(order(), p);
    h
}

#[test]
fn a_deadline_shorter_than_the_retries_compensates_when_it_passes() {
    // Ten attempts of 1 s each would take over 10 s; the saga has 2 s.
    let mut h = with_deadline(10, 2_000);
    h.ok(Step::ReserveInventory);
    let deadline = t0() + Duration::milliseconds(2_000);
    assert_eq!(
        h.state.view().wake_at,
        Some(h.now + Duration::milliseconds(1_000))
    );
    h.wake_after(1_000); // charge-payment attempt 1 times out
    assert!(h
        .wake_after(150)
        .iter()
        .any(|e| matches!(e.kind, EventKind::StepRetried { .. })));
    assert_eq!(
        h.state.view().wake_at,
        Some(deadline),
        "the saga's deadline comes first"
    );
    assert!(
        h.wake_after(100).is_empty(),
        "nothing is due before the deadline"
    );
    h.now = deadline;
    let events = h.when(Input::Wake { now: deadline }).unwrap();
    assert!(matches!(
        &events[0].kind,
        EventKind::StepFailed {
            cause: FailureCause::DeadlineExceeded,
            step,
            ..
        } if step == Step::ChargePayment.name()
    ));
    assert_eq!(h.state.status(), Status::Compensating);
    // The charge in flight may have been applied: it is refunded first.
    assert_eq!(&h.command_steps()[3..], ["refund-payment"]);
    // Compensation is not cut short by the deadline: only step timeouts wake it.
    assert_eq!(
        h.state.view().wake_at,
        Some(deadline + Duration::milliseconds(1_000))
    );
    h.ok(Step::RefundPayment);
    h.ok(Step::ReleaseInventory);
    h.ok(Step::CancelOrder);
    assert_eq!(h.state.status(), Status::Compensated);
}

#[test]
fn without_a_deadline_only_the_step_timeouts_count() {
    let mut h = with_deadline(2, 0);
    assert_eq!(
        h.state.view().wake_at,
        Some(t0() + Duration::milliseconds(1_000))
    );
    assert!(h.wake_after(999).is_empty());
    h.ok(Step::ReserveInventory);
    h.ok(Step::ChargePayment);
    h.ok(Step::ConfirmOrder);
    assert_eq!(h.state.status(), Status::Completed);
}

#[test]
fn a_step_can_have_a_timeout_of_its_own() {
    let mut h = Harness::new();
    let mut p = policy();
    p.step_timeouts_ms.insert("charge-payment".into(), 5_000);
    h.start(order(), p);
    let reserve = h.state.view().wake_at.unwrap();
    assert_eq!(reserve, t0() + Duration::milliseconds(1_000));
    h.ok(Step::ReserveInventory);
    assert_eq!(
        h.state.view().wake_at,
        Some(h.now + Duration::milliseconds(5_000))
    );
    assert!(h.wake_after(4_999).is_empty());
    let events = h.wake_after(1);
    assert!(matches!(
        &events[0].kind,
        EventKind::StepFailed { cause: FailureCause::TimedOut, reason, .. } if reason.contains("5000 ms")
    ));
}
