//! The JSON log line, written directly: the same bytes as `tracing_subscriber`'s JSON format
//! with `flatten_event(true)` and `with_current_span(false)` — `timestamp`, `level`, the event's
//! fields in order, `target` — built in one buffer with `serde_json`'s own escaping and number
//! formatting, instead of through `tracing_serde`'s map serializer and a `fmt::Write` adaptor
//! that re-checks UTF-8 on every few bytes (about two thirds of the access line's cost).
//!
//! Events this writer does not shape the same way (inside a span, or forwarded from the `log`
//! crate, whose metadata is normalised) go to the stock formatter.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::registry::LookupSpan;

/// The gateway's JSON event format.
#[derive(Debug)]
pub struct JsonLine<T> {
    timer: T,
    stock: format::Format<Json, T>,
}

impl<T: FormatTime + Clone> JsonLine<T> {
    /// The format, with `timer` for the `timestamp` member.
    pub fn new(timer: T) -> Self {
        let stock = format::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_timer(timer.clone());
        JsonLine { timer, stock }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        _ => "ERROR",
    }
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it (which escapes
/// the quote, the backslash and the control characters below U+0020, nothing else); a string with none of
/// those is copied as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether no byte of `b` needs escaping: eight bytes at a time, each word tested for a byte
/// below 0x20, a quote or a backslash with the exact "has a byte less than / equal to" bit tricks
/// (no false positives, so no false negatives of the fallback either).
fn plain(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let special = |w: u64| {
        w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
    };
    let mut words = b.chunks_exact(8);
    let clean = words.by_ref().all(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        !special(u64::from_le_bytes(w))
    });
    clean && words.remainder().iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\')
}

/// One JSON line built member by member, in the shape [`JsonLine`] gives an event —
/// `timestamp`, `level`, the members in the order they are added, `target` — for a line whose
/// members are known up front (the access line), without going through `tracing`'s field
/// visitor: the same bytes for the same values.
#[derive(Debug)]
pub struct Object {
    out: Vec<u8>,
}

impl Object {
    /// A line at `level`, stamped by `timer`.
    pub fn new(timer: &impl FormatTime, level: &Level) -> Self {
        let mut timestamp = String::with_capacity(32);
        // A timer that fails leaves the stamp empty, as it does for the tracing path.
        let _ = timer.format_time(&mut Writer::new(&mut timestamp));
        // An audit line is about 650 bytes with short values (more with a real user agent or
        // client name); 640 made every one of them grow and copy once.
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"timestamp\":");
        string(&mut out, &timestamp);
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(level_name(level).as_bytes());
        out.push(b'"');
        Object { out }
    }

    /// `,"name":` — member names are the gateway's own identifiers, written as they are.
    fn key(&mut self, name: &str) {
        debug_assert!(plain(name.as_bytes()), "member name {name:?} needs escaping");
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.key(name);
        string(&mut self.out, value);
        self
    }

    /// An unsigned integer member.
    pub fn u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.key(name);
        let _ = serde_json::to_writer(&mut self.out, &value);
        self
    }

    /// A floating-point member (`null` when not finite, as `serde_json` writes it).
    pub fn f64(&mut self, name: &str, value: f64) -> &mut Self {
        self.key(name);
        let _ = serde_json::to_writer(&mut self.out, &value);
        self
    }

    /// A boolean member.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.key(name);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// The line, closed with `target` and a newline.
    pub fn finish(mut self, target: &str) -> Vec<u8> {
        self.out.extend_from_slice(b",\"target\":");
        string(&mut self.out, target);
        self.out.extend_from_slice(b"}\n");
        self.out
    }
}

struct Fields<'a> {
    out: &'a mut Vec<u8>,
    scratch: String,
}

impl Fields<'_> {
    fn entry(&mut self, field: &Field) {
        self.out.push(b',');
        string(self.out, field.name());
        self.out.push(b':');
    }

    fn scalar(&mut self, field: &Field, v: impl serde::Serialize) {
        self.entry(field);
        let _ = serde_json::to_writer(&mut *self.out, &v);
    }
}

impl Visit for Fields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.scalar(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.scratch.clear();
        let _ = write!(self.scratch, "{value:?}");
        self.entry(field);
        string(self.out, &self.scratch);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.scalar(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.scalar(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.scalar(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field);
        string(self.out, value);
    }
}

impl<S, N, T> FormatEvent<S, N> for JsonLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let in_span = event.parent().is_some() || ctx.lookup_current().is_some();
        if in_span || meta.fields().field("log.target").is_some() {
            return self.stock.format_event(ctx, writer, event);
        }
        let mut timestamp = String::new();
        self.timer.format_time(&mut Writer::new(&mut timestamp))?;
        let mut out = Vec::with_capacity(1024);
        out.push(b'{');
        string(&mut out, "timestamp");
        out.push(b':');
        string(&mut out, &timestamp);
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(level_name(meta.level()).as_bytes());
        out.push(b'"');
        event.record(&mut Fields {
            out: &mut out,
            scratch: String::new(),
        });
        out.extend_from_slice(b",\"target\":");
        string(&mut out, meta.target());
        out.extend_from_slice(b"}\n");
        // serde_json writes UTF-8 only; the check is one pass over the line.
        writer.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
pub(crate) mod tests;
