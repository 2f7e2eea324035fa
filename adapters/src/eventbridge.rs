//! Commands to AWS participants through Amazon EventBridge (`PutEvents`).
//!
//! Each command is one event on the configured bus: `Source` is this
//! orchestrator, `DetailType` the command type, `Detail` the command's
//! CloudEvent. Requests stay within the service's limits (10 entries and
//! 256 KiB each); entries the service reports failed (`FailedEntryCount`) are
//! returned as failed, so the relay retries those only. A command too large
//! for any request is refused for good.

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_eventbridge::config::{Credentials, Region};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use sagaplane_orchestrator::codec;
use sagaplane_orchestrator::ports::{OutboxMessage, PublishError, Transport, TransportError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Entries per `PutEvents` request, at most.
const MAX_ENTRIES: usize = 10;
/// Bytes per `PutEvents` request, at most (as the service counts them).
const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Where and how commands go to EventBridge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventBridgeSettings {
    /// The event bus commands are put on.
    pub bus: String,
    /// The AWS region; empty: from the environment (`AWS_REGION`, profile).
    pub region: String,
    /// An endpoint other than AWS's (a local emulator); empty: AWS.
    pub endpoint_url: String,
    /// `Source` of every event.
    pub source: String,
    /// Fixed credentials, for a local emulator; empty: the standard AWS chain
    /// (environment, profile, IAM role).
    pub access_key_id: String,
    #[serde(serialize_with = "crate::servicebus::serialize_redacted")]
    pub secret_access_key: SecretString,
}

impl Default for EventBridgeSettings {
    fn default() -> Self {
        Self {
            bus: "default".into(),
            region: String::new(),
            endpoint_url: String::new(),
            source: codec::COMMAND_SOURCE.into(),
            access_key_id: String::new(),
            secret_access_key: SecretString::default(),
        }
    }
}

pub struct EventBridgeTransport {
    client: aws_sdk_eventbridge::Client,
    settings: EventBridgeSettings,
}

impl EventBridgeTransport {
    pub async fn new(settings: EventBridgeSettings) -> Self {
        let credentials = (!settings.access_key_id.is_empty()).then(|| {
            Credentials::new(
                &settings.access_key_id,
                settings.secret_access_key.expose_secret(),
                None,
                None,
                "sagaplane-settings",
            )
        });
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if !settings.region.is_empty() {
            loader = loader.region(Region::new(settings.region.clone()));
        }
        if !settings.endpoint_url.is_empty() {
            loader = loader.endpoint_url(settings.endpoint_url.clone());
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let config = loader.load().await;
        Self {
            client: aws_sdk_eventbridge::Client::new(&config),
            settings,
        }
    }

    fn entry(&self, message: &OutboxMessage) -> (PutEventsRequestEntry, usize) {
        let event = codec::command_event(message, &self.settings.source);
        let detail = serde_json::to_string(&event).expect("a command serialises");
        // As EventBridge sizes an entry: its source, detail type and detail.
        let size = self.settings.source.len() + message.command_type.len() + detail.len();
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.settings.bus)
            .source(&self.settings.source)
            .detail_type(&message.command_type)
            .detail(detail)
            .build();
        (entry, size)
    }

    /// Puts one request's entries; the ids of those that failed, with why.
    async fn put(&self, chunk: Vec<(Uuid, PutEventsRequestEntry)>) -> Vec<(Uuid, TransportError)> {
        let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
        let entries = chunk.into_iter().map(|(_, e)| e).collect();
        match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) if out.failed_entry_count() == 0 => Vec::new(),
            // Results come in the order of the entries.
            Ok(out) => ids
                .iter()
                .zip(out.entries())
                .filter_map(|(id, result)| {
                    let code = result.error_code()?;
                    let message = result.error_message().unwrap_or_default();
                    Some((
                        *id,
                        TransportError::transient(format!("EventBridge: {code}: {message}")),
                    ))
                })
                .collect(),
            Err(e) => {
                let reason = format!(
                    "EventBridge PutEvents failed: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                );
                ids.into_iter()
                    .map(|id| (id, TransportError::transient(reason.clone())))
                    .collect()
            }
        }
    }
}

#[async_trait]
impl Transport for EventBridgeTransport {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        let mut failed = Vec::new();
        let mut chunk: Vec<(Uuid, PutEventsRequestEntry)> = Vec::new();
        let mut chunk_bytes = 0;
        for message in messages {
            let (entry, size) = self.entry(message);
            if size > MAX_REQUEST_BYTES {
                failed.push((
                    message.message_id,
                    TransportError::permanent(format!(
                        "the command is {size} bytes, more than EventBridge takes ({MAX_REQUEST_BYTES})"
                    )),
                ));
                continue;
            }
            if chunk.len() == MAX_ENTRIES || chunk_bytes + size > MAX_REQUEST_BYTES {
                failed.extend(self.put(std::mem::take(&mut chunk)).await);
                chunk_bytes = 0;
            }
            chunk.push((message.message_id, entry));
            chunk_bytes += size;
        }
        if !chunk.is_empty() {
            failed.extend(self.put(chunk).await);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PublishError { failed })
        }
    }
}
