//! Lets long-polling readers wait until a saga settles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sagaplane_sagas::SagaId;
use tokio::sync::oneshot;

use crate::ports::StepCommit;

/// What a waiter is woken with: the step that settled the saga, when a
/// committed step did (a waiter then need not read the saga again).
pub type Settled = Option<Arc<StepCommit>>;

/// One waiter's subscription.
pub type Watch = oneshot::Receiver<Settled>;

/// Wakes waiters when a saga reaches a terminal or suspended state.
#[derive(Default)]
pub struct SettledNotifier {
    waiters: Mutex<HashMap<SagaId, Vec<oneshot::Sender<Settled>>>>,
}

impl SettledNotifier {
    /// Subscribe before reading the saga's state, so a change in between is not missed.
    pub fn subscribe(&self, saga: SagaId) -> Watch {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().expect("notifier lock poisoned");
        let list = waiters.entry(saga).or_default();
        list.retain(|w| !w.is_closed());
        list.push(tx);
        rx
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
    pub fn forget(&self, saga: SagaId) {
        let mut waiters = self.waiters.lock().expect("notifier lock poisoned");
        if let Some(list) = waiters.get_mut(&saga) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(&saga);
            }
        }
    }
}
