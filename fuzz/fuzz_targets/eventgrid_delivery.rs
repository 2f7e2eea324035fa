//! The Event Grid ingress: one reply CloudEvent, or a JSON array of them,
//! each decoded from its own bytes as cut from the delivery.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sagaplane_fuzz::check_eventgrid_delivery(data);
});
