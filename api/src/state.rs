//! [`AppState`]: what every request handler can reach. The composition root
//! ([`crate::startup`]) builds it and the routes read it; it imports neither,
//! only the settings it holds.

use std::collections::BTreeMap;
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
    /// `[routing]`: participant or command type → transport name.
    pub routing: BTreeMap<String, String>,
}

impl AppState {
    /// The transport that carries a command: its command type's route, else
    /// its participant's, else the simulated participants' (`in-process`).
    pub fn transport_of(&self, participant: &str, command_type: &str) -> &str {
        sagaplane_adapters::route_of(|key| self.routing.get(key), participant, command_type)
            .map_or("in-process", String::as_str)
    }
}
