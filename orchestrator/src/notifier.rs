//! Lets long-polling readers wait until a saga settles.

use std::collections::HashMap;
use std::sync::Mutex;

use sagaplane_sagas::SagaId;
use tokio::sync::oneshot;

/// Wakes waiters when a saga reaches a terminal or suspended state.
#[derive(Default)]
pub struct SettledNotifier {
    waiters: Mutex<HashMap<SagaId, Vec<oneshot::Sender<()>>>>,
}

impl SettledNotifier {
    /// Subscribe before reading the saga's state, so a change in between is not missed.
    pub fn subscribe(&self, saga: SagaId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().expect("notifier lock poisoned");
        let list = waiters.entry(saga).or_default();
        list.retain(|w| !w.is_closed());
        list.push(tx);
        rx
    }

    pub fn notify(&self, saga: SagaId) {
        let list = self
            .waiters
            .lock()
            .expect("notifier lock poisoned")
            .remove(&saga);
        for waiter in list.into_iter().flatten() {
            let _ = waiter.send(());
        }
    }
}
