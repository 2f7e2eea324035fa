//! A registered saga type: its name and what all its sagas share (for a
//! defined type, the versions of its definition, which grow when other nodes
//! store new ones).

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use sagaplane_sagas::Saga;

/// Reads the stored saga definitions again and takes in what is new (versions
/// of known types, new types); `true` if anything was.
pub(crate) type Reload = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// One saga type: its name and what its sagas share. Every live saga's actor
/// holds a copy.
pub(crate) struct Kind<S: Saga> {
    pub name: Arc<str>,
    shared: Arc<RwLock<Arc<S::Kind>>>,
}

impl<S: Saga> Clone for Kind<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: Saga> Kind<S> {
    pub fn new(name: String, shared: Arc<S::Kind>) -> Self {
        Self {
            name: name.into(),
            shared: Arc::new(RwLock::new(shared)),
        }
    }

    /// What the type's sagas share now.
    pub fn shared(&self) -> Arc<S::Kind> {
        self.shared.read().expect("kind lock poisoned").clone()
    }

    /// What the type's sagas share from now on.
    pub fn set_shared(&self, shared: Arc<S::Kind>) {
        *self.shared.write().expect("kind lock poisoned") = shared;
    }
}
