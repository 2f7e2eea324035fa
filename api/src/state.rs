//! [`AppState`]: what every request handler can reach. The composition root
//! ([`crate::startup`]) builds it and the routes read it; it imports neither,
//! only the settings it holds.

use std::sync::Arc;

use sagaplane_orchestrator::{OperatorQueries, Orchestrator};

use crate::configuration::{HttpSettings, IngressSettings};
use crate::exposition::Exposition;

/// What every request handler can reach (the access tokens are app data of
/// their own, [`crate::auth::AccessTokens`]).
pub(crate) struct AppState {
    pub orchestrator: Orchestrator,
    pub queries: Arc<dyn OperatorQueries>,
    pub ingress: IngressSettings,
    pub http: HttpSettings,
    /// `/metrics`' registry and gauges.
    pub exposition: Exposition,
}
