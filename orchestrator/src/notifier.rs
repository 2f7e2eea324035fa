//! Lets long-polling readers wait until a saga settles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sagaplane_sagas::SagaId;
use tokio::sync::oneshot;

use crate::ports::StepCommit;

/// What a waiter is woken with: the step that settled the saga, when a
/// committed step did (a waiter then need not read the saga again).
pub type Settled = Option<Arc<StepCommit>>;

/// Wakes waiters when a saga reaches a terminal or suspended state.
#[derive(Default)]
pub struct SettledNotifier {
    waiters: Mutex<HashMap<SagaId, Vec<oneshot::Sender<Settled>>>>,
}

/// One waiter's subscription to a saga's settling. Dropped (the wait ended,
/// timed out, or its client went away), it leaves nothing behind.
pub struct Watch {
    rx: oneshot::Receiver<Settled>,
    woken: bool,
    notifier: Arc<SettledNotifier>,
    saga: SagaId,
}

impl Watch {
    /// The next settling, once: `None` when the notifier went away or this
    /// subscription was woken already (subscribe again for another).
    pub(crate) async fn settled(&mut self) -> Option<Settled> {
        if self.woken {
            return None;
        }
        let settled = (&mut self.rx).await.ok();
        self.woken = true;
        settled
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.rx.close();
        self.notifier.forget(self.saga);
    }
}

impl SettledNotifier {
    /// Subscribe before reading the saga's state, so a change in between is not missed.
    pub fn subscribe(self: &Arc<Self>, saga: SagaId) -> Watch {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().expect("notifier lock poisoned");
        let list = waiters.entry(saga).or_default();
        list.retain(|w| !w.is_closed());
        list.push(tx);
        Watch {
            rx,
            woken: false,
            notifier: self.clone(),
            saga,
        }
    }

    pub fn notify(&self, saga: SagaId, step: Settled) {
        let list = self
            .waiters
            .lock()
            .expect("notifier lock poisoned")
            .remove(&saga);
        for waiter in list.into_iter().flatten() {
            let _ = waiter.send(step.clone());
        }
    }

    /// Drops the subscriptions to `saga` whose waiters went away.
    fn forget(&self, saga: SagaId) {
        let mut waiters = self.waiters.lock().expect("notifier lock poisoned");
        if let Some(list) = waiters.get_mut(&saga) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(&saga);
            }
        }
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.waiters.lock().expect("notifier lock poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[tokio::test]
    async fn a_subscription_dropped_unwoken_leaves_nothing_behind() {
        let notifier = Arc::new(SettledNotifier::default());
        let saga = SagaId::from_uuid(Uuid::now_v7());
        let first = notifier.subscribe(saga);
        let second = notifier.subscribe(saga);
        drop(first);
        assert_eq!(notifier.watched(), 1, "the other waiter still waits");
        drop(second);
        assert_eq!(notifier.watched(), 0);
    }

    #[tokio::test]
    async fn every_waiter_is_woken_once_with_the_settling_step() {
        let notifier = Arc::new(SettledNotifier::default());
        let saga = SagaId::from_uuid(Uuid::now_v7());
        let mut a = notifier.subscribe(saga);
        let mut b = notifier.subscribe(saga);
        notifier.notify(saga, None);
        assert!(matches!(a.settled().await, Some(None)));
        assert!(matches!(b.settled().await, Some(None)));
        assert_eq!(notifier.watched(), 0);
        assert!(a.settled().await.is_none(), "woken once");
    }
}
