//! A Service Bus message as a receiver takes it: the input's first line is the
//! broker's `MessageId` (none without a newline), the rest the body. The
//! broker's properties come JSON-decoded (any text, NUL included); the body
//! comes as text (the client refuses a body that is not UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaplane_orchestrator::codec::{self, ServiceBusProperties, SERVICEBUS_CHANNEL};

fuzz_target!(|data: &[u8]| {
    let (message_id, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (Some(String::from_utf8_lossy(&data[..i])), &data[i + 1..]),
        None => (None, data),
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let properties = message_id
        .as_deref()
        .map(|message_id| ServiceBusProperties {
            message_id,
            sequence_number: data.len() as i64,
            delivery_count: 1,
        });
    let headers = codec::servicebus_headers("replies", properties);
    sagaplane_fuzz::check_reply(SERVICEBUS_CHANNEL, body.as_bytes(), headers);
});
