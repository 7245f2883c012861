//! Process metrics under their conventional names (`process_*`, no `dcr_gateway_` prefix, as
//! the Prometheus client libraries export them): resident and virtual memory, CPU seconds, open
//! and maximum descriptors, threads and start time. Read from `/proc/self` at each scrape, so
//! only on Linux; elsewhere the series are absent.

use prometheus::{Counter, Gauge, IntGauge, Registry};

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// The process gauges, refreshed by [`Process::sample`] before each render.
#[derive(Debug, Clone)]
pub struct Process {
    registry: Registry,
    resident: IntGauge,
    virtual_memory: IntGauge,
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
}

fn int(reg: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

// === impl Process ===

impl Process {
    /// Registers the process series in a registry of their own (unprefixed).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
        )?;
        registry.register(Box::new(cpu.clone()))?;
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
        )?;
        registry.register(Box::new(start_time.clone()))?;
        Ok(Process {
            resident: int(
                &registry,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            virtual_memory: int(
                &registry,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            open_fds: int(&registry, "process_open_fds", "Open file descriptors.")?,
            max_fds: int(
                &registry,
                "process_max_fds",
                "Maximum open file descriptors (the soft RLIMIT_NOFILE).",
            )?,
            threads: int(&registry, "process_threads", "Operating system threads of the process.")?,
            cpu,
            start_time,
            registry,
        })
    }

    /// The registry to gather (after [`Process::sample`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reads `/proc/self` into the gauges; a file that cannot be read leaves its gauges as they were.
    pub fn sample(&self) {
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(s) = parse_stat(&stat)
        {
            let cpu = (s.utime + s.stime) as f64 / TICKS_PER_SECOND;
            let delta = cpu - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
            self.threads.set(s.threads);
            self.virtual_memory.set(s.vsize);
            if let Some(boot) = boot_time() {
                self.start_time.set(boot + s.starttime as f64 / TICKS_PER_SECOND);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = status_kb(&status, "VmRSS:")
        {
            self.resident.set(kb.saturating_mul(1024));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            self.max_fds.set(i64::try_from(soft).unwrap_or(i64::MAX));
        }
    }
}

/// The fields of `/proc/self/stat` the metrics use.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    threads: i64,
    starttime: u64,
    vsize: i64,
}

/// Parses `/proc/<pid>/stat`: fields after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`); field 3 is the state.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        utime: n(14)?,
        stime: n(15)?,
        threads: i64::try_from(n(20)?).ok()?,
        starttime: n(22)?,
        vsize: i64::try_from(n(23)?).ok()?,
    })
}

/// A `kB` value of `/proc/<pid>/status` (`VmRSS:   1234 kB`).
fn status_kb(text: &str, key: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Boot time (Unix seconds) from `/proc/stat`'s `btime` line.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parentheses_in_the_name() {
        let line = "4242 (dcr gw (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                utime: 250,
                stime: 75,
                threads: 9,
                starttime: 123456,
                vsize: 987654321
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(status_kb("Name:\tx\nVmRSS:\t  5120 kB\n", "VmRSS:"), Some(5120));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process() {
        let p = Process::new().unwrap();
        p.sample();
        assert!(p.resident.get() > 1024 * 1024, "RSS {}", p.resident.get());
        assert!(p.open_fds.get() >= 3);
        assert!(p.max_fds.get() >= p.open_fds.get());
        assert!(p.threads.get() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = p.start_time.get();
        assert!(
            started > now - 86_400.0 && started <= now + 1.0,
            "start {started} now {now}"
        );
    }
}
