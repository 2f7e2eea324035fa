//! [`AppState`]: what every request handler can reach. The composition root
//! ([`crate::startup`]) builds it and the routes read it; it imports neither,
//! only the settings it holds.

use std::sync::Arc;

use sagaplane_orchestrator::{OperatorQueries, Orchestrator};

use crate::configuration::{HttpSettings, IngressSettings};

/// What every request handler can reach (the access tokens are app data of
/// their own, [`crate::auth::AccessTokens`]).
pub(crate) struct AppState {
    pub orchestrator: Orchestrator,
    pub queries: Arc<dyn OperatorQueries>,
    pub ingress: IngressSettings,
    pub http: HttpSettings,
    pub saga_types: Vec<&'static str>,
    /// `/metrics`' registry and gauges. The one name from above: the type is
    /// still defined beside the handler that reads its private fields
    /// (`routes/metrics.rs`), so it is named by path rather than moved here.
    pub exposition: crate::routes::Exposition,
}
