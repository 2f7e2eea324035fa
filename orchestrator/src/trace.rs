//! W3C Trace Context: the `traceparent` a saga's commands carry.

use std::fmt;

use uuid::Uuid;

/// `00-<trace id>-<parent id>-<flags>`, validated. Kept as its lowercase hex
/// digits, inline: every live saga's actor holds one.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 32],
    parent_id: [u8; 16],
    flags: [u8; 2],
}

impl TraceParent {
    /// `None` for anything that is not a valid version-00 traceparent (the
    /// specification says to ignore it then and start a new trace).
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let [version, trace_id, parent_id, flags] = parts[..] else {
            return None;
        };
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = version == "00"
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(parent_id, 16)
            && !zero(parent_id)
            && hex(flags, 2);
        valid.then(|| Self {
            trace_id: digits(trace_id),
            parent_id: digits(parent_id),
            flags: digits(flags),
        })
    }

    /// A new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: digits(&Uuid::new_v4().simple().to_string()),
            parent_id: new_span_id(),
            flags: *b"01",
        }
    }

    /// The same trace, with a new span as the parent of what is sent next.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            parent_id: new_span_id(),
            flags: self.flags,
        }
    }

    pub fn trace_id(&self) -> &str {
        text(&self.trace_id)
    }
}

/// The first `N` digits of `hex`, which has at least that many.
fn digits<const N: usize>(hex: &str) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&hex.as_bytes()[..N]);
    out
}

/// Digits kept are ASCII hex digits.
fn text(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).expect("hex digits are ASCII")
}

fn new_span_id() -> [u8; 16] {
    digits(&Uuid::new_v4().simple().to_string())
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{}",
            text(&self.trace_id),
            text(&self.parent_id),
            text(&self.flags)
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips_and_its_child_keeps_the_trace() {
        let t = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(t.to_string(), SAMPLE);
        let child = t.child();
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(child.to_string(), SAMPLE);
        assert!(TraceParent::parse(&child.to_string()).is_some());
        assert!(TraceParent::parse(&TraceParent::new_root().to_string()).is_some());
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
