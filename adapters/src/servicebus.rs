//! Azure participants through Azure Service Bus (its REST protocol, with
//! shared access signatures), by `azure_messaging_servicebus`.
//!
//! Out: each command is one message — the command's CloudEvent as the body
//! (`application/cloudevents+json`), `MessageId` the CloudEvent's id, `Label`
//! the command type, `CorrelationId` the saga id — sent to its participant's
//! queue or topic.
//!
//! In: receivers take replies from a queue or a topic's subscription in
//! peek-lock mode. A reply is completed only after the step it caused has
//! committed (or was found to be a duplicate, or was kept as a dead letter
//! because it cannot be used); the lock is renewed while the step is slow;
//! when the step could not be taken now, the message is unlocked (abandoned),
//! so the broker delivers it again — until its `MaxDeliveryCount` moves it to
//! the dead-letter subqueue. Should the process die between the commit and the
//! completion, the broker delivers the message again and the inbox recognises it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::{HttpClient, Request, Response, Url};
use azure_messaging_servicebus::service_bus::{
    PeekLockResponse, QueueClient, SendMessageOptions, SettableBrokerProperties,
    SubscriptionReceiver, TopicClient,
};
use futures_util::{stream, StreamExt};
use sagaplane_orchestrator::codec;
use sagaplane_orchestrator::ports::{OutboxMessage, PublishError, Transport, TransportError};
use sagaplane_orchestrator::{Handled, Orchestrator};
use sagaplane_sagas::SagaId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// The channel name of replies that came from Service Bus.
pub const CHANNEL: &str = codec::SERVICEBUS_CHANNEL;

/// A request that takes longer than this has failed (transiently).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serializes a secret of the settings as `"<redacted>"`, or `""` when it is
/// empty: [`SecretString`] has no `Serialize`, and the settings' defaults are
/// read serialized (figment), where an empty secret must stay empty. What comes
/// out is for showing, not for reading back. Used by every secret of the
/// settings, the EventBridge and API ones too.
pub fn serialize_redacted<S: Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let shown = if secret.expose_secret().is_empty() {
        ""
    } else {
        "<redacted>"
    };
    serializer.serialize_str(shown)
}

/// The namespace, its credentials, and where each participant's commands go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceBusSettings {
    /// The namespace: `NAME` of `NAME.servicebus.windows.net`.
    pub namespace: String,
    /// The shared access policy (`skn`) requests are signed with.
    pub policy: String,
    /// That policy's key.
    #[serde(serialize_with = "serialize_redacted")]
    pub key: SecretString,
    /// Where requests go instead of `https://NAME.servicebus.windows.net`
    /// (a local stand-in, e.g. `http://127.0.0.1:5300`); empty: Azure.
    pub endpoint: String,
    /// The queue or topic commands go to.
    pub entity: String,
    /// A queue or topic per command type or participant (the command type's
    /// entry first), instead of `entity`.
    pub entities: BTreeMap<String, String>,
    /// Send requests in flight at once (each saga's commands one at a time).
    pub max_in_flight: usize,
}

impl Default for ServiceBusSettings {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            policy: "RootManageSharedAccessKey".into(),
            key: SecretString::default(),
            endpoint: String::new(),
            entity: "sagaplane-commands".into(),
            entities: BTreeMap::new(),
            max_in_flight: 32,
        }
    }
}

impl ServiceBusSettings {
    /// The HTTP client every Service Bus client of these settings uses.
    pub fn http_client(&self) -> Result<Arc<dyn HttpClient>, String> {
        let inner = azure_core::new_http_client();
        if self.endpoint.is_empty() {
            return Ok(inner);
        }
        let endpoint = Url::parse(&self.endpoint)
            .map_err(|e| format!("transports.servicebus.endpoint `{}`: {e}", self.endpoint))?;
        if endpoint.host_str().is_none() {
            return Err(format!(
                "transports.servicebus.endpoint `{}` names no host",
                self.endpoint
            ));
        }
        Ok(Arc::new(EndpointOverride { endpoint, inner }))
    }

    /// A client of one queue (or, for sending, a topic).
    pub fn queue_client(&self, entity: &str) -> Result<QueueClient, String> {
        QueueClient::new(
            self.http_client()?,
            &self.namespace,
            entity,
            &self.policy,
            self.key.expose_secret().to_owned(),
        )
        .map_err(|e| format!("Service Bus client for `{entity}`: {e}"))
    }

    /// A client of one topic (to receive from its subscriptions).
    pub fn topic_client(&self, topic: &str) -> Result<TopicClient, String> {
        TopicClient::new(
            self.http_client()?,
            &self.namespace,
            topic,
            &self.policy,
            self.key.expose_secret().to_owned(),
        )
        .map_err(|e| format!("Service Bus client for `{topic}`: {e}"))
    }

    fn entity_of(&self, message: &OutboxMessage) -> &str {
        self.entities
            .get(&message.command_type)
            .or_else(|| self.entities.get(&message.participant))
            .map(String::as_str)
            .unwrap_or(&self.entity)
    }
}

/// Sends the Service Bus clients' requests to another host (a local stand-in
/// of the namespace) unchanged otherwise: path, query, headers and signature.
#[derive(Debug)]
struct EndpointOverride {
    endpoint: Url,
    inner: Arc<dyn HttpClient>,
}

#[async_trait]
impl HttpClient for EndpointOverride {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        let mut request = request.clone();
        let url = request.url_mut();
        let redirected = url
            .set_scheme(self.endpoint.scheme())
            .and_then(|_| url.set_host(self.endpoint.host_str()).map_err(|_| ()))
            .and_then(|_| url.set_port(self.endpoint.port()));
        if redirected.is_err() {
            return Err(azure_core::Error::message(
                ErrorKind::Other,
                format!("cannot send a request to {}", self.endpoint),
            ));
        }
        self.inner.execute_request(&request).await
    }
}

/// Commands to the queues and topics of Azure participants.
pub struct ServiceBusTransport {
    settings: ServiceBusSettings,
    clients: BTreeMap<String, QueueClient>,
}

impl ServiceBusTransport {
    pub fn new(settings: ServiceBusSettings) -> Result<Self, String> {
        if settings.namespace.is_empty() || settings.key.expose_secret().is_empty() {
            return Err(
                "[transports.servicebus] needs `namespace` and `key` (and `policy`)".into(),
            );
        }
        let mut clients = BTreeMap::new();
        for entity in std::iter::once(&settings.entity).chain(settings.entities.values()) {
            clients.insert(entity.clone(), settings.queue_client(entity)?);
        }
        Ok(Self { settings, clients })
    }

    async fn send(&self, message: &OutboxMessage) -> Result<(), TransportError> {
        let entity = self.settings.entity_of(message);
        let client = &self.clients[entity];
        let event = codec::command_event(message, codec::COMMAND_SOURCE);
        let body = serde_json::to_string(&event).expect("a command serialises");
        let options = SendMessageOptions {
            content_type: Some(codec::CONTENT_TYPE.into()),
            broker_properties: Some(SettableBrokerProperties {
                message_id: Some(event.id.clone()),
                label: Some(message.command_type.clone()),
                correlation_id: Some(message.saga_id.to_string()),
                ..SettableBrokerProperties::default()
            }),
            custom_properties: None,
        };
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, client.send_message(&body, Some(options)))
            .await
            .map_err(|_| {
                TransportError::transient(format!(
                    "Service Bus: no answer to a send to `{entity}` within {REQUEST_TIMEOUT:?}"
                ))
            })?;
        sent.map_err(|e| {
            let reason = format!("Service Bus: sending to `{entity}` failed: {e}");
            match e.kind() {
                // The broker refuses this message as it is (too large, malformed).
                ErrorKind::HttpResponse { status, .. }
                    if matches!(u16::from(*status), 400 | 413) =>
                {
                    TransportError::permanent(reason)
                }
                _ => TransportError::transient(reason),
            }
        })
    }
}

#[async_trait]
impl Transport for ServiceBusTransport {
    /// One request per command. Each saga's commands go one after another in
    /// commit order; different sagas' go concurrently, up to `max_in_flight`
    /// requests at a time.
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        // Each saga's commands, as positions in `messages`.
        let mut sagas: Vec<Vec<usize>> = Vec::new();
        let mut index: HashMap<SagaId, usize> = HashMap::new();
        for (position, m) in messages.iter().enumerate() {
            let i = *index.entry(m.saga_id).or_insert_with(|| {
                sagas.push(Vec::new());
                sagas.len() - 1
            });
            sagas[i].push(position);
        }
        let failed: Vec<(Uuid, TransportError)> = stream::iter(sagas)
            .map(|positions| async move {
                let mut failed = Vec::new();
                let mut earlier_failed = false;
                for m in positions.into_iter().map(|p| &messages[p]) {
                    if earlier_failed {
                        // The saga's later commands wait for the one that failed.
                        failed.push((
                            m.message_id,
                            TransportError::transient(
                                "not sent: an earlier command of its saga was not",
                            ),
                        ));
                    } else if let Err(e) = self.send(m).await {
                        failed.push((m.message_id, e));
                        earlier_failed = true;
                    }
                }
                failed
            })
            .buffer_unordered(self.settings.max_in_flight.max(1))
            .concat()
            .await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PublishError { failed })
        }
    }
}

/// Where replies are received from, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceBusReceiverSettings {
    /// The queue, or the topic when `subscription` is set.
    pub entity: String,
    /// The topic's subscription; empty: `entity` is a queue.
    pub subscription: String,
    /// Receivers taking messages concurrently.
    pub receivers: usize,
    /// How long one receive request waits for a message (long polling).
    pub wait_ms: u64,
    /// How often the lock of a message being handled is renewed; keep it well
    /// under the entity's lock duration (60 s unless set otherwise).
    pub renew_lock_every_ms: u64,
}

impl Default for ServiceBusReceiverSettings {
    fn default() -> Self {
        Self {
            entity: "sagaplane-replies".into(),
            subscription: String::new(),
            receivers: 16,
            wait_ms: 20_000,
            renew_lock_every_ms: 20_000,
        }
    }
}

enum Source {
    Queue(QueueClient),
    Subscription(SubscriptionReceiver),
}

impl Source {
    async fn peek_lock(&self, wait: Duration) -> azure_core::Result<PeekLockResponse> {
        match self {
            Source::Queue(q) => q.peek_lock_message2(Some(wait)).await,
            Source::Subscription(s) => s.peek_lock_message2(Some(wait)).await,
        }
    }
}

/// Replies from Service Bus, applied through the orchestrator.
pub struct ServiceBusReceiver {
    source: Source,
    name: String,
    settings: ServiceBusReceiverSettings,
    orchestrator: Orchestrator,
}

impl ServiceBusReceiver {
    pub fn new(
        connection: &ServiceBusSettings,
        settings: ServiceBusReceiverSettings,
        orchestrator: Orchestrator,
    ) -> Result<Self, String> {
        if connection.namespace.is_empty() || connection.key.expose_secret().is_empty() {
            return Err(
                "[ingress.servicebus] needs [transports.servicebus] with `namespace` and `key`"
                    .into(),
            );
        }
        let (source, name) = if settings.subscription.is_empty() {
            (
                Source::Queue(connection.queue_client(&settings.entity)?),
                settings.entity.clone(),
            )
        } else {
            let topic = connection.topic_client(&settings.entity)?;
            (
                Source::Subscription(topic.subscription_receiver(&settings.subscription)),
                format!(
                    "{}/subscriptions/{}",
                    settings.entity, settings.subscription
                ),
            )
        };
        Ok(Self {
            source,
            name,
            settings,
            orchestrator,
        })
    }

    /// Starts `receivers` tasks that take replies until the runtime stops.
    pub fn spawn(self) -> Vec<tokio::task::JoinHandle<()>> {
        let receiver = Arc::new(self);
        (0..receiver.settings.receivers.max(1))
            .map(|_| tokio::spawn(receiver.clone().run()))
            .collect()
    }

    async fn run(self: Arc<Self>) {
        let wait = Duration::from_millis(self.settings.wait_ms.max(1_000));
        let mut backoff = Duration::from_millis(100);
        // Consecutive replies that could not be applied.
        let mut failures = 0;
        loop {
            let received =
                tokio::time::timeout(wait + REQUEST_TIMEOUT, self.source.peek_lock(wait)).await;
            let problem = match received {
                Err(_) => format!("no answer within {:?}", wait + REQUEST_TIMEOUT),
                Ok(Err(e)) => format!("{e}"),
                Ok(Ok(message)) => match u16::from(*message.status()) {
                    201 => {
                        failures = if self.handle(message, failures).await {
                            0
                        } else {
                            failures + 1
                        };
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    204 => {
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    status => format!("the broker answered {status}: {}", message.body()),
                },
            };
            self.orchestrator.metrics().receive_failed(CHANNEL);
            tracing::warn!(entity = %self.name, error.message = %problem, retry_in_ms = backoff.as_millis() as u64, "Service Bus receive failed");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Applies one locked message, then completes it; or, when it cannot be
    /// applied now, abandons it — after a pause that grows with `failures`
    /// (the consecutive ones before it), so that a store that is down does not
    /// spend the message's deliveries in a moment. Whether it was handled.
    async fn handle(&self, message: PeekLockResponse, failures: u32) -> bool {
        let properties = message.broker_properties();
        let headers = codec::servicebus_headers(
            &self.name,
            properties.as_ref().map(|p| codec::ServiceBusProperties {
                message_id: &p.message_id,
                sequence_number: p.sequence_number,
                delivery_count: p.delivery_count,
            }),
        );
        let apply = self
            .orchestrator
            .receive_raw(CHANNEL, message.body().into_bytes(), headers);
        tokio::pin!(apply);
        let every = Duration::from_millis(self.settings.renew_lock_every_ms.max(100));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut apply => break outcome,
                _ = renew.tick() => {
                    if let Err(e) = message.renew_message_lock().await {
                        tracing::warn!(entity = %self.name, error.message = %e, "the lock of a reply being applied could not be renewed");
                    }
                }
            }
        };
        match outcome {
            Ok(handled) => {
                // Completed while this receiver takes the next message: the
                // step is committed, so nothing waits on the answer.
                let name = self.name.clone();
                tokio::spawn(async move {
                    if let Err(e) = message.delete_message().await {
                        // The broker will deliver it again; the inbox knows it.
                        tracing::warn!(entity = %name, error.message = %e, "a handled reply could not be completed");
                    } else if matches!(handled, Handled::DeadLettered) {
                        tracing::info!(entity = %name, "an unusable message was kept as a dead letter and completed");
                    }
                });
                true
            }
            Err(e) => {
                // Held (the lock still good: the pause stays under the renewal
                // period), then given back for redelivery.
                let pause = (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(6)))
                    .min(every)
                    .min(Duration::from_secs(5));
                tracing::warn!(entity = %self.name, error.message = %e, pause_ms = pause.as_millis() as u64, "a reply could not be applied now; abandoning it for redelivery");
                tokio::time::sleep(pause).await;
                self.orchestrator.metrics().abandoned(CHANNEL);
                if let Err(e) = message.unlock_message().await {
                    tracing::warn!(entity = %self.name, error.message = %e, "a reply could not be abandoned; its lock will lapse");
                }
                false
            }
        }
    }
}
