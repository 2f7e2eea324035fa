//! A registered saga type: its name and what all its sagas share (for a
//! defined type, the versions of its definition), which can be read again
//! from the store when a history names something this node has not loaded.

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use sagaplane_sagas::Saga;

/// Reads what a type's sagas share anew (e.g. versions stored by another
/// node since this one started); `None` when it cannot.
pub(crate) type Refresh<S> =
    Arc<dyn Fn() -> BoxFuture<'static, Option<Arc<<S as Saga>::Kind>>> + Send + Sync>;

/// One saga type: its name and what its sagas share.
pub(crate) struct Kind<S: Saga> {
    pub name: String,
    shared: Arc<RwLock<Arc<S::Kind>>>,
    refresh: Option<Refresh<S>>,
}

impl<S: Saga> Clone for Kind<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            shared: self.shared.clone(),
            refresh: self.refresh.clone(),
        }
    }
}

impl<S: Saga> Kind<S> {
    pub fn new(name: String, shared: Arc<S::Kind>, refresh: Option<Refresh<S>>) -> Self {
        Self {
            name,
            shared: Arc::new(RwLock::new(shared)),
            refresh,
        }
    }

    /// What the type's sagas share now.
    pub fn shared(&self) -> Arc<S::Kind> {
        self.shared.read().expect("kind lock poisoned").clone()
    }

    /// Reads what the type's sagas share anew; `true` if it was.
    pub async fn refresh(&self) -> bool {
        let Some(refresh) = &self.refresh else {
            return false;
        };
        match refresh().await {
            Some(fresh) => {
                *self.shared.write().expect("kind lock poisoned") = fresh;
                true
            }
            None => false,
        }
    }
}
