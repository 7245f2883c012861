use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// A writer keeping what it is given, shared by its clones (also used by the access-line
/// tests in `pipeline::observe::line`).
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[derive(Clone)]
struct Fixed;

impl FormatTime for Fixed {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str("2026-12-01T22:20:52.123456Z")
    }
}

#[derive(Debug)]
struct Oops;

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("it \"broke\"\n")
    }
}

impl std::error::Error for Oops {}

/// Every shape of event the gateway writes (and some it does not), through one format.
fn events() {
    let peer: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
    tracing::info!(
        target: "dcr_gateway::access",
        method = %http::Method::GET,
        route = "other",
        status = 201u16,
        latency_ms = 0.42,
        request_id = %"abc",
        peer = %peer,
        source = %peer.ip(),
        user_agent = "quote\" back\\ nl\n tab\t ctl\u{1}\u{1f} del\u{7f} é 日本",
        bytes_in = 0u64,
        token_cached = true,
        "request"
    );
    tracing::info!(target: "audit", decision = "deny", rule = ?Some("r"), reason = "x", "registration decision");
    tracing::warn!("plain message {} with {:?}", 42, "debug");
    tracing::error!(error = &Oops as &dyn std::error::Error, "failed");
    tracing::debug!(
        neg = -5i64,
        big = u64::MAX,
        wide = 1u128 << 100,
        iwide = -(1i128 << 100)
    );
    for f in [
        0.0,
        -0.0,
        1.0,
        0.1,
        100.0,
        1e21,
        1e-7,
        123456.789,
        f64::NAN,
        f64::INFINITY,
    ] {
        tracing::info!(value = f, "float");
    }
    tracing::info!(empty = "", "");
    tracing::trace!(r#type = "raw ident");
    let span = tracing::info_span!("outer", id = 7);
    span.in_scope(|| tracing::info!(inner = 1, "in a span"));
    tracing::info!(parent: &span, "explicit parent");
}

fn capture(json_line: bool) -> String {
    let out = Capture::default();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(out.clone())
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_timer(Fixed);
    if json_line {
        tracing::subscriber::with_default(builder.event_format(JsonLine::new(Fixed)).finish(), events);
    } else {
        tracing::subscriber::with_default(builder.finish(), events);
    }
    String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn writes_the_bytes_the_stock_json_format_writes() {
    let stock = capture(false);
    let ours = capture(true);
    assert!(stock.lines().count() >= 18, "{stock}");
    for (a, b) in stock.lines().zip(ours.lines()) {
        assert_eq!(a, b);
    }
    assert_eq!(stock, ours);
}

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    let mut cases: Vec<String> = (0u32..0x80).filter_map(char::from_u32).map(String::from).collect();
    cases.extend(["", "plain", "é 日本 \u{7f}", "\u{2028}\u{2029}", "a\"b\\c"].map(String::from));
    // A special byte at every position of strings longer than one sixteen-byte chunk.
    for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
        for at in 0..40 {
            let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD".chars().take(40).collect();
            s.replace_range(at..=at, &special.to_string());
            cases.push(s);
        }
    }
    for s in &cases {
        let mut ours = Vec::new();
        string(&mut ours, s);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(s).unwrap(),
            "{s:?}"
        );
    }
}
