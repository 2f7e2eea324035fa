//! Which transport carries which participant's commands: configuration, not code.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sagaplane_orchestrator::ports::{OutboxMessage, PublishError, Transport};

/// Sends each command through the transport its command type is routed to,
/// else the one its participant is routed to, else the default one.
pub struct RoutingTransport {
    routes: HashMap<String, Arc<dyn Transport>>,
    default: Arc<dyn Transport>,
}

impl RoutingTransport {
    pub fn new(default: Arc<dyn Transport>) -> Self {
        Self {
            routes: HashMap::new(),
            default,
        }
    }

    /// The commands of `key` — a command type (`order.payment.charge.v1`) or
    /// a participant (`payment`) — go through `transport`.
    pub fn route(mut self, key: impl Into<String>, transport: Arc<dyn Transport>) -> Self {
        self.routes.insert(key.into(), transport);
        self
    }

    fn transport_of(&self, m: &OutboxMessage) -> &Arc<dyn Transport> {
        route_of(|key| self.routes.get(key), &m.participant, &m.command_type)
            .unwrap_or(&self.default)
    }
}

/// The route of a command among routes keyed by command type or participant
/// (`lookup`): its command type's entry wins over its participant's; `None`
/// when neither is routed.
pub fn route_of<'a, V: ?Sized>(
    lookup: impl Fn(&str) -> Option<&'a V>,
    participant: &str,
    command_type: &str,
) -> Option<&'a V> {
    lookup(command_type).or_else(|| lookup(participant))
}

#[async_trait]
impl Transport for RoutingTransport {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        // Group by transport, keeping each group's commit order.
        let mut groups: Vec<(&Arc<dyn Transport>, Vec<OutboxMessage>)> = Vec::new();
        for m in messages {
            let transport = self.transport_of(m);
            match groups.iter_mut().find(|(t, _)| Arc::ptr_eq(t, transport)) {
                Some((_, group)) => group.push(m.clone()),
                None => groups.push((transport, vec![m.clone()])),
            }
        }
        let mut failed = Vec::new();
        for (transport, group) in groups {
            if let Err(e) = transport.publish(&group).await {
                failed.extend(e.failed);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PublishError { failed })
        }
    }
}
