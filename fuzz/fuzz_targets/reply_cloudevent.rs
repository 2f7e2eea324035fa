//! The reply CloudEvent codec: the bytes a transport (Service Bus, the
//! in-process participants, a redrive) delivers as a reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sagaplane_fuzz::check_reply("fuzz", data, serde_json::json!({}));
});
