//! W3C Trace Context: an incoming `traceparent` (W3C Trace Context Level 1, §3.2) is checked
//! for syntax. A valid one is forwarded to Keycloak unchanged and its trace id is logged on the
//! request's line; a malformed one (or several) is removed together with `tracestate`, which
//! the specification says to ignore without a valid `traceparent`, and is never logged.

use http::HeaderMap;

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The trace id of a syntactically valid `traceparent` value: `version-traceid-parentid-flags`,
/// lowercase hex of 2, 32, 16 and 2 digits, version not `ff`, trace and parent ids not all
/// zeros. Version `00` has exactly these four fields; a later version may append
/// `-`-separated data, which is accepted as the specification asks.
pub fn trace_id(value: &[u8]) -> Option<&str> {
    if value.len() < 55 {
        return None;
    }
    let (version, trace, parent, flags) = (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    let dashes = value[2] == b'-' && value[35] == b'-' && value[52] == b'-';
    let hex = lower_hex(version) && lower_hex(trace) && lower_hex(parent) && lower_hex(flags);
    let nonzero = trace.iter().any(|&b| b != b'0') && parent.iter().any(|&b| b != b'0');
    let rest_ok = match version {
        b"00" => value.len() == 55,
        b"ff" => false,
        _ => value.len() == 55 || value[55] == b'-',
    };
    if dashes && hex && nonzero && rest_ok {
        std::str::from_utf8(trace).ok()
    } else {
        None
    }
}

/// The trace id to log, after removing a malformed `traceparent` (and then `tracestate`) from
/// `headers`. `None` when the request carried no valid one.
pub fn take(headers: &mut HeaderMap) -> Option<String> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let first = values.next()?;
    let valid = match values.next() {
        None => trace_id(first.as_bytes()).map(str::to_owned),
        Some(_) => None, // several: ambiguous, so none is trusted
    };
    if valid.is_none() {
        headers.remove(TRACEPARENT);
        headers.remove(TRACESTATE);
    }
    valid
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_values() {
        assert_eq!(trace_id(GOOD.as_bytes()), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(trace_id(future.as_bytes()), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn take_keeps_a_valid_header_and_drops_a_malformed_one() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, GOOD.parse().unwrap());
        h.insert(TRACESTATE, "k=v".parse().unwrap());
        assert_eq!(take(&mut h).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(h[TRACEPARENT], GOOD);
        assert_eq!(h[TRACESTATE], "k=v");

        h.insert(TRACEPARENT, "00-zz-yy-01".parse().unwrap());
        assert_eq!(take(&mut h), None);
        assert!(h.get(TRACEPARENT).is_none() && h.get(TRACESTATE).is_none());

        h.insert(TRACEPARENT, GOOD.parse().unwrap());
        h.append(TRACEPARENT, GOOD.parse().unwrap());
        assert_eq!(take(&mut h), None, "two traceparent headers");
        assert!(h.get(TRACEPARENT).is_none());

        assert_eq!(take(&mut HeaderMap::new()), None);
    }
}
