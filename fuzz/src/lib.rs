//! What every fuzz target asserts of a decoder's answer: it never panics (the
//! fuzzer sees that), what it accepts can be stored, and what it refuses can
//! be kept as a dead letter. PostgreSQL refuses U+0000 in `text` and in
//! `jsonb` strings and keys; the raw bytes go to a `bytea` and may hold anything.

use sagaplane_orchestrator::codec::{self, DecodeError};
use sagaplane_orchestrator::ports::DeadLetter;
use sagaplane_orchestrator::Inbound;
use sagaplane_sagas::Outcome;
use serde_json::Value;

/// The longest reason a participant may give for a refusal or a failure.
pub const MAX_OUTCOME_REASON_BYTES: usize = 4096;

/// `text` can be stored in a PostgreSQL `text` column.
pub fn assert_storable_text(what: &str, text: &str) {
    assert!(!text.contains('\0'), "{what} holds a NUL: {text:?}");
}

/// `value` can be stored in a PostgreSQL `jsonb` column.
pub fn assert_storable_json(what: &str, value: &Value) {
    match value {
        Value::String(s) => assert_storable_text(what, s),
        Value::Array(items) => items.iter().for_each(|v| assert_storable_json(what, v)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            assert_storable_text(what, k);
            assert_storable_json(what, v);
        }),
        _ => {}
    }
}

/// Decodes `raw` as `channel` delivered it, and checks the answer: a reply
/// whose every stored field is storable, or a dead letter that is.
pub fn check_reply(channel: &str, raw: &[u8], headers: Value) {
    match codec::decode_for(channel, raw) {
        Ok(inbound) => check_accepted(&inbound, raw),
        Err(e) => check_refused(channel, raw, headers, &e),
    }
}

/// Splits an Event Grid delivery and checks each event as
/// [`check_reply`] does: every part is a piece of `raw`, in order, and
/// lexically valid JSON; a delivery that cannot be split is kept as a dead letter whole.
pub fn check_eventgrid_delivery(raw: &[u8]) {
    let channel = codec::EVENTGRID_CHANNEL;
    match codec::split_eventgrid_delivery(raw) {
        Ok(delivery) => {
            assert!(!delivery.events.is_empty(), "a delivery holds an event");
            assert!(delivery.batch || delivery.events.len() == 1);
            let mut from = 0;
            for (i, part) in delivery.events.into_iter().enumerate() {
                let start = part.as_ptr() as usize - raw.as_ptr() as usize;
                assert!(
                    start >= from && start + part.len() <= raw.len(),
                    "a piece of the delivery, in order"
                );
                from = start + part.len();
                // Lexically: a lone surrogate (`"\ud800"`) passes, and the
                // reply decoder refuses it later.
                serde_json::from_slice::<&serde_json::value::RawValue>(part)
                    .expect("each part is JSON");
                check_reply(channel, part, serde_json::json!({"batch_index": i}));
            }
        }
        Err(e) => check_refused(channel, raw, serde_json::json!({}), &e),
    }
}

fn check_accepted(inbound: &Inbound, raw: &[u8]) {
    assert_eq!(inbound.raw, raw, "the raw bytes are kept whole");
    assert!(!inbound.message_id.trim().is_empty());
    assert_storable_text("the message id", &inbound.message_id);
    let reply = &inbound.reply;
    assert_storable_text("the step", &reply.step);
    if let Outcome::Refused { reason } | Outcome::Failed { reason } = &reply.outcome {
        assert_storable_text("the outcome's reason", reason);
        assert!(reason.len() <= MAX_OUTCOME_REASON_BYTES);
    }
    if let Some(result) = &reply.result {
        assert!(result.is_object(), "a result is an object");
        assert_storable_json("the result", result);
    }
    // The reply as events and the inbox keep it.
    let stored = serde_json::to_value(reply).expect("a reply serialises");
    assert_storable_json("the reply", &stored);
}

fn check_refused(channel: &str, raw: &[u8], headers: Value, e: &DecodeError) {
    let letter = codec::storable(DeadLetter {
        channel: channel.to_owned(),
        reason: e.to_string(),
        raw: raw.to_vec(),
        headers,
        outbox_message_id: None,
    });
    assert!(!letter.reason.is_empty());
    assert_storable_text("the dead letter's reason", &letter.reason);
    assert_storable_json("the dead letter's headers", &letter.headers);
    assert_eq!(letter.raw, raw, "the raw bytes are kept whole");
}
