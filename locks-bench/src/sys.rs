//! Process figures read from `/proc`: CPU time and resident memory (Linux).

use std::collections::HashMap;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`: 100 on every mainstream Linux ABI,
/// whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// CPU time (user + system) used by this process so far, every thread included, with
/// 10 ms resolution. `None` when `/proc` cannot be read.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Per-thread CPU time of this process, in nanoseconds, from `/proc/self/task/*/schedstat`
/// (nanosecond resolution, unlike [`cpu_time`]). `None` when it cannot be read.
#[derive(Debug, Clone)]
pub struct ThreadCpu(HashMap<u64, u64>);

impl ThreadCpu {
    /// Read every thread's CPU time now.
    pub fn now() -> Option<Self> {
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir("/proc/self/task").ok()? {
            let Ok(entry) = entry else { continue };
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may exit between the listing and the read: skip it.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
                threads.insert(tid, ns);
            }
        }
        (!threads.is_empty()).then_some(ThreadCpu(threads))
    }

    /// CPU time used since `earlier` by the threads alive now (a thread that exited in
    /// between loses its share of the window; a new thread counts in full).
    pub fn since(&self, earlier: &ThreadCpu) -> Duration {
        let ns: u64 = self
            .0
            .iter()
            .map(|(tid, now)| now.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum();
        Duration::from_nanos(ns)
    }
}

/// The resident set size of this process (`VmRSS` of `/proc/self/status`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc() {
        assert!(cpu_time().is_some());
        assert!(rss_bytes().is_some_and(|b| b > 0));
        let before = ThreadCpu::now().expect("schedstat");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = ThreadCpu::now().expect("schedstat");
        assert!(after.since(&before) > Duration::ZERO, "{x}");
    }
}
