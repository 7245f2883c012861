//! The log writer: a line is appended to an in-memory buffer, and a background thread writes
//! the buffer to the output every few milliseconds, so a request never waits on the file and a
//! burst of lines costs one `write`. Nothing wakes the thread per line.
//!
//! Lossless: past its bound the buffer is written out by the logging thread itself (the
//! backpressure a plain writer would apply), in order. Dropping the [`Guard`] writes what is left.
//!
//! [`LogWriter::serve_direct`] lets code that formats a whole line itself (the access line, see
//! [`direct`]) append it without going through the `tracing` subscriber.
//!
//! [`Clock`] writes the same timestamps as `tracing_subscriber`'s default timer, formatting the
//! date and time of day once per second instead of once per line.

use std::cell::Cell;
use std::io::Write;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// How often the background thread writes.
const INTERVAL: Duration = Duration::from_millis(10);
/// Buffered bytes past which the logging thread writes the buffer itself.
const BOUND: usize = 1 << 20;

type Out = Box<dyn Write + Send>;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Held while a buffer is taken and written, so buffers reach the output in order.
    out: Mutex<Out>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("buffered", &self.buf.try_lock().map(|b| b.len()))
            .finish_non_exhaustive()
    }
}

/// The `MakeWriter` to give the `tracing` subscriber.
#[derive(Debug)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Keeps the background thread; dropping it writes the remaining lines and stops the thread.
#[derive(Debug)]
pub struct Guard {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// The writer that [`direct`] hands out, once installed.
static DIRECT: OnceLock<Arc<Shared>> = OnceLock::new();

/// The installed direct writer, if any: whole lines appended to it reach the same output, in
/// the same buffer, as the subscriber's lines.
pub fn direct() -> Option<Direct> {
    DIRECT.get().map(|s| Direct(s.as_ref()))
}

/// Appends whole lines to the log writer (see [`direct`]).
#[derive(Debug, Clone, Copy)]
pub struct Direct(&'static Shared);

impl Direct {
    /// Appends `line` (which ends in a newline).
    pub fn push(&self, line: &[u8]) {
        self.0.push(line);
    }
}

/// A writer over `out` and the guard that drains it.
pub fn new(out: impl Write + Send + 'static) -> (LogWriter, Guard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(64 * 1024)),
        out: Mutex::new(Box::new(out)),
    });
    let (stop, stopped) = channel::<()>();
    let bg = shared.clone();
    let thread = std::thread::Builder::new()
        .name("dcr-gateway-log".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                bg.drain();
            }
        })
        .ok();
    let writer = LogWriter { shared: shared.clone() };
    let guard = Guard {
        stop: Some(stop),
        thread,
        shared,
    };
    (writer, guard)
}

// === impl Shared ===

impl Shared {
    /// Writes everything buffered so far.
    fn drain(&self) {
        let mut out = self.out.lock();
        let data = {
            let mut buf = self.buf.lock();
            if buf.is_empty() {
                return;
            }
            std::mem::replace(&mut *buf, Vec::with_capacity(64 * 1024))
        };
        // Nowhere to report a failing log output; the lines are dropped, the gateway serves on.
        let _ = out.write_all(&data).and_then(|()| out.flush());
    }

    fn push(&self, line: &[u8]) {
        let full = {
            let mut buf = self.buf.lock();
            buf.extend_from_slice(line);
            buf.len() >= BOUND
        };
        if full {
            self.drain();
        }
    }
}

/// Where one event's line goes.
#[derive(Debug)]
pub struct Line<'a>(&'a Shared);

// === impl LogWriter ===

impl LogWriter {
    /// Makes this writer the one [`direct`] returns (once per process; `false` if another
    /// writer was installed first).
    pub fn serve_direct(&self) -> bool {
        DIRECT.set(self.shared.clone()).is_ok()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.shared)
    }
}

impl Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// === impl Guard ===

impl Drop for Guard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.drain();
    }
}

/// RFC 3339 UTC timestamps with microseconds, `2026-12-01T22:20:52.123456Z`: the format of
/// `tracing_subscriber::fmt::time::SystemTime`, with the part before the fraction cached per
/// thread (no lock shared between the threads that log).
#[derive(Debug, Default, Clone)]
pub struct Clock(());

/// Length of `YYYY-MM-DDTHH:MM:SS`.
const CIVIL: usize = 19;

thread_local! {
    /// The second last formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; CIVIL])> = const { Cell::new((u64::MAX, [0; CIVIL])) };
}

/// `YYYY-MM-DDTHH:MM:SS` for Unix time `secs` (proleptic Gregorian, UTC).
fn civil(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let tod = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let cached = SECOND.with(|c| {
            let (at, text) = c.get();
            if at == secs {
                return Some(text);
            }
            let text: [u8; CIVIL] = civil(secs).into_bytes().try_into().ok()?; // past year 9999: not cached
            c.set((secs, text));
            Some(text)
        });
        let Some(date) = cached else {
            return write!(w, "{}.{:06}Z", civil(secs), now.subsec_micros());
        };
        let mut line = [0u8; CIVIL + 8];
        line[..CIVIL].copy_from_slice(&date);
        line[CIVIL] = b'.';
        let mut micros = now.subsec_micros();
        for d in line[CIVIL + 1..CIVIL + 7].iter_mut().rev() {
            *d = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        line[CIVIL + 7] = b'Z';
        w.write_str(std::str::from_utf8(&line).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_once_the_guard_drops() {
        let sink = Sink::default();
        let (writer, guard) = new(sink.clone());
        let mut w = writer.make_writer();
        let mut want = Vec::new();
        // Enough to pass the bound several times: the logging thread writes some buffers itself.
        for i in 0..100_000 {
            let line = format!("line {i} {}\n", "x".repeat(i % 40));
            w.write_all(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        assert!(*sink.0.lock() == want, "lines lost or out of order");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), "1970-01-01T00:00:00");
        assert_eq!(civil(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(civil(1_709_251_199), "2024-02-29T23:59:59");
        assert_eq!(civil(4_102_444_799), "2099-12-31T23:59:59");
        assert_eq!(civil(1_796_163_652), "2026-12-01T22:20:52");
    }

    #[test]
    fn clock_writes_what_the_default_timer_writes() {
        let format = |t: &dyn FormatTime| {
            let mut s = String::new();
            t.format_time(&mut Writer::new(&mut s)).unwrap();
            s
        };
        // The two may straddle a second: retry until both read the same second.
        for _ in 0..100 {
            let ours = format(&Clock::default());
            let theirs = format(&tracing_subscriber::fmt::time::SystemTime);
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            if ours[..19] == theirs[..19] {
                assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
                return;
            }
        }
        panic!("the clocks never agreed on a second");
    }

    #[test]
    fn the_thread_writes_without_the_guard_dropping() {
        let sink = Sink::default();
        let (writer, _guard) = new(sink.clone());
        writer.make_writer().write_all(b"one line\n").unwrap();
        for _ in 0..500 {
            if !sink.0.lock().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&*sink.0.lock(), b"one line\n");
    }
}
