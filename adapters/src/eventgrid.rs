//! Commands to participants behind Azure Event Grid: published to a custom
//! topic's endpoint as CloudEvents 1.0 batches
//! (`application/cloudevents-batch+json`), over plain HTTP.
//!
//! A request carries the topic's key in the `aeg-sas-key` header, or a
//! shared access signature made from it (`aeg-sas-token`), so the key itself
//! never travels. Batches stay within the service's limits: 5,000 events and
//! 1 MB per request, 1 MB per event. The service takes a batch whole or not
//! at all; when it refuses one as malformed (`400`) or too large (`413`),
//! each command of it is sent alone, so only the one at fault fails for good.
//! Anything else (no answer, `401`, `429`, `5xx`) is transient: the relay
//! retries with back-off and dead-letters past the command's budget.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sagaplane_orchestrator::codec;
use sagaplane_orchestrator::ports::{OutboxMessage, PublishError, Transport, TransportError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::servicebus::serialize_redacted;

/// Events per request, at most.
pub const MAX_EVENTS: usize = 5_000;
/// Bytes per request, at most: "1 MB", read as the smaller of 10^6 and 2^20.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// The API version requests name when the endpoint names none.
pub const API_VERSION: &str = "2018-01-01";
/// The media type of a batch of CloudEvents.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json; charset=utf-8";
/// A signature is made again when it has less than this left.
const SAS_RENEW_BEFORE: Duration = Duration::from_secs(300);

/// How requests prove they may publish to the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventGridAuth {
    /// The key itself, in the `aeg-sas-key` header.
    #[default]
    Key,
    /// A shared access signature made from the key (`aeg-sas-token`).
    Sas,
}

/// Where and how commands go to Event Grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventGridSettings {
    /// The custom topic's endpoint,
    /// `https://{topic}.{region}-1.eventgrid.azure.net/api/events`;
    /// `?api-version=2018-01-01` is added when it names no version.
    pub endpoint: String,
    /// One of the topic's access keys (base64, as the portal shows it).
    #[serde(serialize_with = "serialize_redacted")]
    pub key: SecretString,
    /// `key`: send the key in `aeg-sas-key`; `sas`: send a signature made
    /// from it, valid for `sas_ttl_seconds`.
    pub auth: EventGridAuth,
    pub sas_ttl_seconds: u64,
    /// `source` of every command's CloudEvent.
    pub source: String,
    /// A request not answered within this long has failed (transiently).
    pub timeout_ms: u64,
}

impl Default for EventGridSettings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            key: SecretString::default(),
            auth: EventGridAuth::Key,
            sas_ttl_seconds: 3600,
            source: codec::COMMAND_SOURCE.into(),
            timeout_ms: 10_000,
        }
    }
}

impl EventGridSettings {
    /// The URL requests go to: the endpoint, with an API version.
    pub fn url(&self) -> String {
        if self.endpoint.contains("api-version=") {
            self.endpoint.clone()
        } else if self.endpoint.contains('?') {
            format!("{}&api-version={API_VERSION}", self.endpoint)
        } else {
            format!("{}?api-version={API_VERSION}", self.endpoint)
        }
    }
}

/// A shared access signature for `resource` (the topic's endpoint) that
/// lapses at `expires`, signed with `key` (base64): `r={resource}&e={expiry}
/// &s={signature}`, each URL-encoded, the signature an HMAC-SHA256 of
/// `r=…&e=…` with the decoded key. The expiry is written as the service's
/// own examples write it (`12/3/2026 4:05:00 PM`, UTC).
pub fn sas_token(resource: &str, expires: DateTime<Utc>, key: &str) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| format!("the Event Grid key is not base64: {e}"))?;
    let expiry = expires.format("%-m/%-d/%Y %-I:%M:%S %p").to_string();
    let unsigned = format!("r={}&e={}", url_encode(resource), url_encode(&expiry));
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(unsigned.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("{unsigned}&s={}", url_encode(&signature)))
}

fn url_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Why the topic did not take a request.
struct Refusal {
    status: Option<u16>,
    reason: String,
}

impl Refusal {
    /// The batch as sent is at fault, perhaps only one of its events.
    fn splittable(&self) -> bool {
        matches!(self.status, Some(400 | 413))
    }

    fn error(&self) -> TransportError {
        if self.splittable() {
            TransportError::permanent(self.reason.clone())
        } else {
            TransportError::transient(self.reason.clone())
        }
    }
}

pub struct EventGridTransport {
    http: reqwest::Client,
    url: String,
    settings: EventGridSettings,
    /// The signature in use and when it lapses (`auth = "sas"`).
    sas: Mutex<Option<(String, DateTime<Utc>)>>,
}

impl EventGridTransport {
    pub fn new(settings: EventGridSettings) -> Result<Self, String> {
        if settings.endpoint.is_empty() {
            return Err("[transports.eventgrid] needs `endpoint`, the topic's endpoint".into());
        }
        if settings.key.expose_secret().is_empty() {
            return Err("[transports.eventgrid] needs `key`, an access key of the topic".into());
        }
        if settings.auth == EventGridAuth::Sas {
            // Refuse a key that cannot sign now, not at the first command.
            sas_token(&settings.endpoint, Utc::now(), settings.key.expose_secret())?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .build()
            .map_err(|e| format!("the Event Grid HTTP client: {e}"))?;
        Ok(Self {
            http,
            url: settings.url(),
            settings,
            sas: Mutex::new(None),
        })
    }

    /// The header that authenticates a request, and its value.
    fn credential(&self) -> (&'static str, String) {
        let key = self.settings.key.expose_secret();
        match self.settings.auth {
            EventGridAuth::Key => ("aeg-sas-key", key.to_owned()),
            EventGridAuth::Sas => {
                let mut sas = self.sas.lock().expect("the signature lock");
                let now = Utc::now();
                let fresh = sas.as_ref().is_some_and(|(_, expires)| {
                    (*expires - now).to_std().unwrap_or_default() > SAS_RENEW_BEFORE
                });
                if !fresh {
                    let ttl = chrono::Duration::seconds(
                        self.settings.sas_ttl_seconds.clamp(600, 7 * 86_400) as i64,
                    );
                    let expires = now + ttl;
                    let token = sas_token(&self.settings.endpoint, expires, key)
                        .expect("the key was checked at start");
                    *sas = Some((token, expires));
                }
                ("aeg-sas-token", sas.as_ref().expect("made above").0.clone())
            }
        }
    }

    /// Publishes `events` (each a serialised CloudEvent) in one request.
    async fn post(&self, events: &[&[u8]]) -> Result<(), Refusal> {
        let mut body = Vec::with_capacity(batch_bytes(events.iter().map(|e| e.len())));
        body.push(b'[');
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event);
        }
        body.push(b']');
        let (header, credential) = self.credential();
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header(header, credential)
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| Refusal {
            status: None,
            reason: format!("Event Grid: publishing failed: {e}"),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(Refusal {
            status: Some(status.as_u16()),
            reason: format!(
                "Event Grid refused the batch ({status}): {}",
                codec::printable(message.chars().take(500).collect::<String>().trim())
            ),
        })
    }

    /// Publishes one request's events; those that failed, with why.
    async fn publish_chunk(&self, chunk: &[(Uuid, Vec<u8>)]) -> Vec<(Uuid, TransportError)> {
        let events: Vec<&[u8]> = chunk.iter().map(|(_, e)| e.as_slice()).collect();
        match self.post(&events).await {
            Ok(()) => Vec::new(),
            Err(refusal) if refusal.splittable() && chunk.len() > 1 => {
                let mut failed = Vec::new();
                for (id, event) in chunk {
                    if let Err(refusal) = self.post(&[event]).await {
                        failed.push((*id, refusal.error()));
                    }
                }
                failed
            }
            Err(refusal) => {
                let error = refusal.error();
                chunk.iter().map(|(id, _)| (*id, error.clone())).collect()
            }
        }
    }
}

/// The bytes of a JSON array of events of these sizes.
fn batch_bytes(sizes: impl Iterator<Item = usize>) -> usize {
    let (count, sum) = sizes.fold((0, 0), |(n, s), size| (n + 1, s + size));
    sum + count.max(1) + 1
}

#[async_trait]
impl Transport for EventGridTransport {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        let mut failed = Vec::new();
        let mut chunk: Vec<(Uuid, Vec<u8>)> = Vec::new();
        let mut chunk_bytes = 1;
        for message in messages {
            let event = codec::command_event(message, &self.settings.source);
            let bytes = serde_json::to_vec(&event).expect("a command serialises");
            if batch_bytes(std::iter::once(bytes.len())) > MAX_REQUEST_BYTES {
                failed.push((
                    message.message_id,
                    TransportError::permanent(format!(
                        "the command is {} bytes, more than Event Grid takes ({MAX_REQUEST_BYTES})",
                        bytes.len()
                    )),
                ));
                continue;
            }
            // One more event adds its bytes and a separator.
            if chunk.len() == MAX_EVENTS || chunk_bytes + bytes.len() + 1 > MAX_REQUEST_BYTES {
                failed.extend(self.publish_chunk(&chunk).await);
                chunk.clear();
                chunk_bytes = 1;
            }
            chunk_bytes += bytes.len() + 1;
            chunk.push((message.message_id, bytes));
        }
        if !chunk.is_empty() {
            failed.extend(self.publish_chunk(&chunk).await);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PublishError { failed })
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_signature_names_the_resource_and_expiry_url_encoded_and_signs_both() {
        let key = base64::engine::general_purpose::STANDARD.encode(b"topic-key");
        let expires = Utc.with_ymd_and_hms(2026, 12, 3, 16, 5, 0).unwrap();
        let token = sas_token(
            "https://t.westeurope-1.eventgrid.azure.net/api/events",
            expires,
            &key,
        )
        .unwrap();
        let (unsigned, signature) = token.rsplit_once("&s=").unwrap();
        assert_eq!(
            unsigned,
            "r=https%3A%2F%2Ft.westeurope-1.eventgrid.azure.net%2Fapi%2Fevents\
             &e=12%2F3%2F2026+4%3A05%3A00+PM"
        );
        let signature: String = form_urlencoded::parse(format!("s={signature}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"topic-key").unwrap();
        mac.update(unsigned.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(signature, expected);
        assert!(sas_token("r", expires, "not base64!").is_err());
    }

    #[test]
    fn the_url_gets_an_api_version_unless_it_names_one() {
        let with = |endpoint: &str| {
            EventGridSettings {
                endpoint: endpoint.into(),
                ..EventGridSettings::default()
            }
            .url()
        };
        assert_eq!(
            with("http://h/api/events"),
            "http://h/api/events?api-version=2018-01-01"
        );
        assert_eq!(
            with("http://h/api/events?x=1"),
            "http://h/api/events?x=1&api-version=2018-01-01"
        );
        assert_eq!(
            with("http://h/api/events?api-version=2024-06-01"),
            "http://h/api/events?api-version=2024-06-01"
        );
    }

    #[test]
    fn a_batch_counts_its_brackets_and_separators() {
        assert_eq!(batch_bytes([3usize, 4].into_iter()), 3 + 4 + 3);
        assert_eq!(batch_bytes(std::iter::once(5)), 7);
    }
}
