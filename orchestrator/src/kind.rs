//! A registered saga type: its name and what all its sagas share.

use std::sync::Arc;

use sagaplane_sagas::Saga;

/// One saga type: its name and what its sagas share.
pub(crate) struct Kind<S: Saga> {
    pub name: String,
    pub shared: Arc<S::Kind>,
}

impl<S: Saga> Clone for Kind<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            shared: self.shared.clone(),
        }
    }
}
