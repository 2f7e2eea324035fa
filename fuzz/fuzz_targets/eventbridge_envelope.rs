//! The EventBridge ingress: an EventBridge event whose `detail` is the reply
//! CloudEvent, or the CloudEvent alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaplane_orchestrator::codec::EVENTBRIDGE_CHANNEL;

fuzz_target!(|data: &[u8]| {
    sagaplane_fuzz::check_reply(EVENTBRIDGE_CHANNEL, data, serde_json::json!({}));
});
