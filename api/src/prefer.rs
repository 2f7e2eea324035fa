//! The `Prefer` request header (RFC 7240), as far as sagaplane honours it:
//! `wait=N`, the seconds a client is willing to wait for a final answer.

use actix_web::http::header::HeaderMap;

/// The `wait` preference, in seconds: the first one given, in any of the
/// request's `Prefer` headers. A preference that is not understood (another
/// name; a `wait` that is not a whole number) is ignored, as RFC 7240 asks.
pub(crate) fn wait_seconds(headers: &HeaderMap) -> Option<u64> {
    // Only the first `wait` counts (RFC 7240 §2): a later one is not a
    // fallback for a first one that is not understood.
    let value = headers
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|preference| {
            // Parameters after `;` belong to the preference and change nothing here.
            let head = preference.split(';').next().unwrap_or_default();
            let (name, value) = head.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim())
        })?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A wait too long to count is a long wait; the caller caps it.
    Some(value.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn wait(values: &[&str]) -> Option<u64> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                HeaderName::from_static("prefer"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        wait_seconds(&headers)
    }

    #[test]
    fn reads_wait_among_other_preferences() {
        assert_eq!(wait(&["wait=5"]), Some(5));
        assert_eq!(wait(&["respond-async, wait=10"]), Some(10));
        assert_eq!(wait(&["return=minimal", "Wait = 3 ; foo=bar"]), Some(3));
        assert_eq!(wait(&["wait=\"7\""]), Some(7));
        assert_eq!(wait(&["wait=0"]), Some(0));
        assert_eq!(wait(&["wait=99999999999999999999999"]), Some(u64::MAX));
    }

    #[test]
    fn ignores_what_it_does_not_understand() {
        assert_eq!(wait(&[]), None);
        assert_eq!(wait(&["respond-async"]), None);
        assert_eq!(wait(&["wait"]), None);
        assert_eq!(wait(&["wait="]), None);
        assert_eq!(wait(&["wait=-1"]), None);
        assert_eq!(wait(&["wait=1.5"]), None);
        assert_eq!(wait(&["waiting=4"]), None);
        assert_eq!(wait(&["handling=lenient; wait=4"]), None);
        // Only the first wait counts.
        assert_eq!(wait(&["wait=soon, wait=5"]), None);
        assert_eq!(wait(&["wait=2", "wait=5"]), Some(2));
    }
}
