//! CloudEvents 1.0 (structured JSON mode) for every command sent and every
//! reply received, whatever the transport. One codec, so a command published
//! on one channel and its reply taken from another agree on every field.
//!
//! A command: `type` is its versioned command type (`order.payment.charge.v1`),
//! `subject` the saga id, `data` the command's body; extensions carry the step,
//! the attempt, the idempotency key, the correlation id (the saga id) and the
//! W3C `traceparent`.
//!
//! A reply: `type` is [`REPLY_TYPE`], `subject` the saga id, `data` is
//! `{"step", "attempt", "outcome": {"status": "succeeded" | "refused" |
//! "failed", "reason"?}}`; `id` must be unique per reply (it de-duplicates) and
//! `causationid` should name the command answered.

use chrono::{DateTime, Utc};
use sagaplane_sagas::{Outcome, Reply, SagaId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::input::Inbound;
use crate::ports::{DeadLetter, OutboxMessage};
use crate::trace::TraceParent;

pub const SPEC_VERSION: &str = "1.0";
/// The `source` of every command this orchestrator sends.
pub const COMMAND_SOURCE: &str = "sagaplane";
pub const REPLY_TYPE: &str = "sagaplane.reply.v1";
pub const JSON: &str = "application/json";
/// The media type of a CloudEvent in structured mode, for transports that carry one.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// Replies larger than this are refused as poison.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// A CloudEvent in structured JSON mode, with the extensions sagaplane uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotencykey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagastep: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagaattempt: Option<u32>,
}

/// The CloudEvent a command travels as; `source` names this orchestrator.
pub fn command_event(message: &OutboxMessage, source: &str) -> CloudEvent {
    CloudEvent {
        specversion: SPEC_VERSION.into(),
        id: message.message_id.to_string(),
        source: source.into(),
        event_type: message.command_type.clone(),
        subject: Some(message.saga_id.to_string()),
        time: Some(message.created_at),
        datacontenttype: Some(JSON.into()),
        data: message.data.clone(),
        correlationid: Some(message.saga_id.to_string()),
        causationid: None,
        idempotencykey: Some(message.idempotency_key.clone()),
        traceparent: message.traceparent.clone(),
        sagastep: Some(message.step.clone()),
        sagaattempt: Some(message.attempt),
    }
}

/// The reply CloudEvent a participant sends for `command`.
pub fn reply_event(
    command: &CloudEvent,
    reply_id: String,
    source: &str,
    reply: &Reply,
) -> CloudEvent {
    CloudEvent {
        subject: command.subject.clone(),
        correlationid: command.correlationid.clone(),
        causationid: Some(command.id.clone()),
        idempotencykey: command.idempotencykey.clone(),
        traceparent: command.traceparent.clone(),
        ..reply_body(reply_id, source, reply)
    }
}

/// The reply CloudEvent for a command read straight from the outbox (the
/// in-process participants): as [`reply_event`] to its CloudEvent.
pub fn reply_to(
    command: &OutboxMessage,
    reply_id: String,
    source: &str,
    reply: &Reply,
) -> CloudEvent {
    let saga = command.saga_id.to_string();
    CloudEvent {
        subject: Some(saga.clone()),
        correlationid: Some(saga),
        causationid: Some(command.message_id.to_string()),
        idempotencykey: Some(command.idempotency_key.clone()),
        traceparent: command.traceparent.clone(),
        ..reply_body(reply_id, source, reply)
    }
}

fn reply_body(reply_id: String, source: &str, reply: &Reply) -> CloudEvent {
    CloudEvent {
        specversion: SPEC_VERSION.into(),
        id: reply_id,
        source: source.into(),
        event_type: REPLY_TYPE.into(),
        subject: None,
        time: Some(reply.at),
        datacontenttype: Some(JSON.into()),
        data: serde_json::to_value(ReplyData {
            step: reply.step.clone(),
            attempt: reply.attempt,
            outcome: reply.outcome.clone(),
            result: reply.result.clone(),
        })
        .expect("a reply serialises"),
        correlationid: None,
        causationid: None,
        idempotencykey: None,
        traceparent: None,
        sagastep: None,
        sagaattempt: None,
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyData {
    step: String,
    attempt: u32,
    outcome: Outcome,
    /// A successful step's result object, read by later steps' commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

/// Why inbound bytes are not a usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the message is {0} bytes, more than the {MAX_REPLY_BYTES} allowed")]
    TooLarge(usize),
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    #[error("the message is not a CloudEvent: {0}")]
    NotCloudEvent(String),
    #[error("unsupported CloudEvents specversion `{0}`")]
    SpecVersion(String),
    #[error("the event type is `{0}`, not `{REPLY_TYPE}`")]
    NotAReply(String),
    #[error("the subject `{0}` is not a saga id")]
    NoSaga(String),
    #[error("the reply data is invalid: {0}")]
    BadData(String),
}

/// `text` safe to store in PostgreSQL and to log: control characters (NUL,
/// which PostgreSQL refuses, among them) written as `\u{…}` escapes. For
/// texts built from received bytes, such as a dead letter's reason; the raw
/// bytes themselves are kept whole.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            c if c.is_control() && c != '\n' && c != '\t' => c.escape_unicode().collect::<Vec<_>>(),
            c => vec![c],
        })
        .collect()
}

/// `value` with every string (and object key) made [`printable`].
pub fn printable_json(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(printable(s)),
        Value::Array(items) => Value::Array(items.iter().map(printable_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (printable(k), printable_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `letter` as it is stored: its reason and headers repeat what was received,
/// so they are made [`printable`] (safe to store and to log); the raw bytes
/// stay whole.
pub fn storable(letter: DeadLetter) -> DeadLetter {
    DeadLetter {
        reason: printable(&letter.reason),
        headers: printable_json(&letter.headers),
        ..letter
    }
}

/// The channel of replies that come through the EventBridge ingress.
pub const EVENTBRIDGE_CHANNEL: &str = "eventbridge";

/// The channel of replies that come from Service Bus.
pub const SERVICEBUS_CHANNEL: &str = "servicebus";

/// The channel of replies that Event Grid pushes to the Event Grid ingress.
pub const EVENTGRID_CHANNEL: &str = "eventgrid";

/// The events of an Event Grid delivery, each as its own bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct EventGridDelivery<'a> {
    pub events: Vec<&'a [u8]>,
    /// Whether they came as an array (even of one).
    pub batch: bool,
}

/// The events of an Event Grid push delivery in the CloudEvents schema: one
/// CloudEvent (`application/cloudevents+json`) or a batch, a JSON array of
/// them (`application/cloudevents-batch+json`). Each comes back as its own
/// bytes, cut from `raw`, so a reply that cannot be used is kept as a dead
/// letter holding exactly what was sent for it. An error when `raw` is
/// neither: nothing in it can be told apart.
pub fn split_eventgrid_delivery(raw: &[u8]) -> Result<EventGridDelivery<'_>, DecodeError> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => {
            serde_json::from_slice::<&serde_json::value::RawValue>(raw)
                .map_err(|e| DecodeError::NotJson(e.to_string()))?;
            Ok(EventGridDelivery {
                events: vec![raw],
                batch: false,
            })
        }
        Some(b'[') => {
            let events: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(raw).map_err(|e| DecodeError::NotJson(e.to_string()))?;
            if events.is_empty() {
                return Err(DecodeError::NotCloudEvent(
                    "the batch holds no event".into(),
                ));
            }
            Ok(EventGridDelivery {
                // Each element's text is a slice of `raw` (the parser borrows it).
                events: events.into_iter().map(|e| e.get().as_bytes()).collect(),
                batch: true,
            })
        }
        _ => Err(DecodeError::NotCloudEvent(
            "an Event Grid delivery is a CloudEvent or a JSON array of CloudEvents".into(),
        )),
    }
}

/// What a dead letter keeps of a received Service Bus message's broker properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceBusProperties<'a> {
    pub message_id: &'a str,
    pub sequence_number: i64,
    pub delivery_count: i32,
}

/// The headers kept with a reply taken from the Service Bus `entity` (its
/// body is the reply's raw bytes): the entity and the broker's properties,
/// `null` when the broker sent none.
pub fn servicebus_headers(entity: &str, properties: Option<ServiceBusProperties<'_>>) -> Value {
    serde_json::json!({
        "entity": entity,
        "message_id": properties.map(|p| p.message_id),
        "sequence_number": properties.map(|p| p.sequence_number),
        "delivery_count": properties.map(|p| p.delivery_count),
    })
}

/// Reads the bytes `channel` delivered as a reply: what came through the
/// EventBridge ingress is an EventBridge event (see
/// [`decode_eventbridge_reply`]), anything else a reply CloudEvent. Every
/// ingress, receiver and redrive reads replies through this one function.
pub fn decode_for(channel: &str, raw: &[u8]) -> Result<Inbound, DecodeError> {
    match channel {
        EVENTBRIDGE_CHANNEL => decode_eventbridge_reply(channel, raw),
        _ => decode_reply(channel, raw),
    }
}

/// Reads a reply CloudEvent; `channel` is where it came from.
pub fn decode_reply(channel: &str, raw: &[u8]) -> Result<Inbound, DecodeError> {
    if raw.len() > MAX_REPLY_BYTES {
        return Err(DecodeError::TooLarge(raw.len()));
    }
    let event: CloudEvent = serde_json::from_slice(raw).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => DecodeError::NotCloudEvent(e.to_string()),
        _ => DecodeError::NotJson(e.to_string()),
    })?;
    decode_reply_event(channel, event, raw.to_vec())
}

/// Reads a reply that EventBridge delivers (an API destination's call): the
/// event envelope with the reply CloudEvent as its `detail`, or the CloudEvent
/// alone (an input transformer that sends only the detail).
pub fn decode_eventbridge_reply(channel: &str, raw: &[u8]) -> Result<Inbound, DecodeError> {
    if raw.len() > MAX_REPLY_BYTES {
        return Err(DecodeError::TooLarge(raw.len()));
    }
    let mut value: Value =
        serde_json::from_slice(raw).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let detail = match value.get_mut("detail") {
        Some(detail) if detail.is_object() => detail.take(),
        _ => value,
    };
    let event: CloudEvent =
        serde_json::from_value(detail).map_err(|e| DecodeError::NotCloudEvent(e.to_string()))?;
    decode_reply_event(channel, event, raw.to_vec())
}

/// Reads a reply from an already parsed CloudEvent (e.g. the `detail` of an
/// EventBridge event); `raw` is kept for dead-lettering.
pub fn decode_reply_event(
    channel: &str,
    event: CloudEvent,
    raw: Vec<u8>,
) -> Result<Inbound, DecodeError> {
    if event.specversion != SPEC_VERSION {
        return Err(DecodeError::SpecVersion(event.specversion));
    }
    if event.id.trim().is_empty() {
        return Err(DecodeError::NotCloudEvent("`id` is empty".into()));
    }
    if event.event_type != REPLY_TYPE {
        return Err(DecodeError::NotAReply(event.event_type));
    }
    let subject = event.subject.unwrap_or_default();
    let saga_id: SagaId = subject
        .parse()
        .map_err(|_| DecodeError::NoSaga(subject.clone()))?;
    let data: ReplyData =
        serde_json::from_value(event.data).map_err(|e| DecodeError::BadData(e.to_string()))?;
    if let Outcome::Refused { reason } | Outcome::Failed { reason } = &data.outcome {
        if reason.len() > 4096 {
            return Err(DecodeError::BadData(
                "the reason is longer than 4096 bytes".into(),
            ));
        }
        if reason.contains('\0') {
            return Err(DecodeError::BadData(
                "the reason holds a NUL character".into(),
            ));
        }
    }
    if data.result.as_ref().is_some_and(|r| !r.is_object()) {
        return Err(DecodeError::BadData(
            "`result` must be a JSON object".into(),
        ));
    }
    // The result goes into events and commands (`jsonb`), which hold no U+0000.
    if data.result.as_ref().is_some_and(holds_nul) {
        return Err(DecodeError::BadData(
            "the result holds a NUL character".into(),
        ));
    }
    // PostgreSQL stores no U+0000 in text.
    if event.id.contains('\0') || data.step.contains('\0') {
        return Err(DecodeError::BadData(
            "the id or step holds a NUL character".into(),
        ));
    }
    Ok(Inbound {
        channel: channel.into(),
        message_id: event.id,
        saga_id,
        reply: Reply {
            step: data.step,
            attempt: data.attempt,
            outcome: data.outcome,
            result: data.result,
            at: event
                .time
                .map_or_else(crate::clock::now, crate::clock::micros),
        },
        raw,
        traceparent: event.traceparent.as_deref().and_then(TraceParent::parse),
    })
}

/// Whether a string or key of `value` holds U+0000.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn command() -> OutboxMessage {
        OutboxMessage {
            message_id: Uuid::now_v7(),
            saga_id: SagaId::from_uuid(Uuid::now_v7()),
            saga_type: "order".into(),
            step: "charge-payment".into(),
            attempt: 2,
            participant: "payment".into(),
            command_type: "order.payment.charge.v1".into(),
            idempotency_key: "k-1".into(),
            data: json!({"amount_cents": 5}),
            created_at: Utc::now(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            publish_attempts: 0,
        }
    }

    #[test]
    fn a_reply_to_a_command_round_trips_through_bytes() {
        let message = command();
        let cmd = command_event(&message, "sagaplane");
        let wire = serde_json::to_vec(&cmd).unwrap();
        let cmd: CloudEvent = serde_json::from_slice(&wire).unwrap();
        assert_eq!(cmd.event_type, "order.payment.charge.v1");
        assert_eq!(cmd.sagaattempt, Some(2));
        let reply = Reply {
            step: cmd.sagastep.clone().unwrap(),
            attempt: cmd.sagaattempt.unwrap(),
            outcome: Outcome::Refused {
                reason: "card declined".into(),
            },
            at: Utc::now(),
            result: None,
        };
        let answer = reply_event(&cmd, "r-1".into(), "payment", &reply);
        let raw = serde_json::to_vec(&answer).unwrap();
        let inbound = decode_reply("test", &raw).unwrap();
        assert_eq!(inbound.saga_id, message.saga_id);
        assert_eq!(inbound.message_id, "r-1");
        assert_eq!(inbound.reply.step, reply.step);
        assert_eq!(inbound.reply.outcome, reply.outcome);
        assert_eq!(
            inbound.traceparent.map(|t| t.to_string()),
            message.traceparent
        );
        assert_eq!(inbound.raw, raw);
    }

    #[test]
    fn a_reply_to_an_outbox_row_equals_the_reply_to_its_cloudevent() {
        let message = command();
        let reply = Reply {
            step: message.step.clone(),
            attempt: 2,
            outcome: Outcome::Succeeded,
            at: Utc::now(),
            result: None,
        };
        let via_event = reply_event(&command_event(&message, "s"), "r".into(), "p", &reply);
        assert_eq!(reply_to(&message, "r".into(), "p", &reply), via_event);
    }

    #[test]
    fn poison_is_named_precisely() {
        let ok = |data: Value| {
            json!({"specversion": "1.0", "id": "x", "source": "s", "type": REPLY_TYPE,
                   "subject": SagaId::from_uuid(Uuid::now_v7()).to_string(), "data": data})
        };
        let good = ok(json!({"step": "a", "attempt": 1, "outcome": {"status": "succeeded"}}));
        assert!(decode_reply("c", good.to_string().as_bytes()).is_ok());
        type Expect = fn(&DecodeError) -> bool;
        let cases: Vec<(Vec<u8>, Expect)> = vec![
            (b"\xff\x00".to_vec(), |e| {
                matches!(e, DecodeError::NotJson(_))
            }),
            (b"{\"id\": 1}".to_vec(), |e| {
                matches!(e, DecodeError::NotCloudEvent(_))
            }),
            (
                ok(json!({"step": "a", "attempt": "one", "outcome": {"status": "succeeded"}}))
                    .to_string()
                    .into_bytes(),
                |e| matches!(e, DecodeError::BadData(_)),
            ),
            (
                {
                    let mut v = good.clone();
                    v["subject"] = json!("not-a-saga");
                    v.to_string().into_bytes()
                },
                |e| matches!(e, DecodeError::NoSaga(_)),
            ),
            (
                {
                    let mut v = good.clone();
                    v["type"] = json!("other.v1");
                    v.to_string().into_bytes()
                },
                |e| matches!(e, DecodeError::NotAReply(_)),
            ),
            (
                {
                    let mut v = good.clone();
                    v["specversion"] = json!("0.3");
                    v.to_string().into_bytes()
                },
                |e| matches!(e, DecodeError::SpecVersion(_)),
            ),
            // Taken, it could not be stored (a `jsonb` string holds no
            // U+0000): never applied, and never kept as a dead letter either.
            (
                ok(
                    json!({"step": "a", "attempt": 1, "outcome": {"status": "succeeded"},
                          "result": {"id": ["x\u{0}"]}}),
                )
                .to_string()
                .into_bytes(),
                |e| matches!(e, DecodeError::BadData(_)),
            ),
            (
                ok(
                    json!({"step": "a", "attempt": 1, "outcome": {"status": "succeeded"},
                          "result": {"k\u{0}": 1}}),
                )
                .to_string()
                .into_bytes(),
                |e| matches!(e, DecodeError::BadData(_)),
            ),
            (vec![b' '; MAX_REPLY_BYTES + 1], |e| {
                matches!(e, DecodeError::TooLarge(_))
            }),
        ];
        for (raw, expected) in cases {
            let err = decode_reply("c", &raw).unwrap_err();
            assert!(expected(&err), "{err:?}");
        }
    }

    #[test]
    fn a_service_bus_message_keeps_its_broker_properties_or_nulls() {
        let properties = ServiceBusProperties {
            message_id: "m-1",
            sequence_number: 7,
            delivery_count: 2,
        };
        assert_eq!(
            servicebus_headers("replies", Some(properties)),
            json!({"entity": "replies", "message_id": "m-1", "sequence_number": 7, "delivery_count": 2})
        );
        assert_eq!(
            servicebus_headers("replies", None),
            json!({"entity": "replies", "message_id": null, "sequence_number": null, "delivery_count": null})
        );
    }

    #[test]
    fn a_dead_letter_is_stored_with_its_reason_and_headers_printable_and_its_bytes_whole() {
        let letter = storable(DeadLetter {
            channel: "c".into(),
            reason: "bad \u{0} subject".into(),
            raw: b"\x00\xff".to_vec(),
            headers: json!({"k\u{0}": ["v\u{0}"]}),
            outbox_message_id: None,
        });
        assert_eq!(letter.reason, "bad \\u{0} subject");
        assert_eq!(letter.headers, json!({"k\\u{0}": ["v\\u{0}"]}));
        assert_eq!(letter.raw, b"\x00\xff");
    }

    #[test]
    fn an_event_grid_delivery_splits_into_the_bytes_of_each_event() {
        let one = br#" {"id":"a"} "#;
        let single = split_eventgrid_delivery(one).unwrap();
        assert_eq!((single.events, single.batch), (vec![&one[..]], false));
        let batch = br#"[ {"id":"a"}, 7 ,{"id":"b","data":[1,2]}]"#;
        let parts = split_eventgrid_delivery(batch).unwrap();
        assert!(parts.batch);
        assert_eq!(
            parts.events,
            vec![&br#"{"id":"a"}"#[..], b"7", br#"{"id":"b","data":[1,2]}"#]
        );
        for refused in [
            &b""[..],
            b"  ",
            b"[]",
            b"\"x\"",
            b"[{",
            b"{\"id\":1} x",
            b"null",
        ] {
            assert!(
                split_eventgrid_delivery(refused).is_err(),
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
