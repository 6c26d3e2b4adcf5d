//! What the memory and file-descriptor checks read: the host's (or the cgroup's) memory in
//! use and its total, this process's resident memory, its open file descriptors and their
//! limit. Linux only, from `/proc` and `/sys/fs/cgroup` (cgroup v2); elsewhere, or when a
//! file cannot be read, the reading is `None` and its check is skipped.
//!
//! Owns the parsers (pure, tested on sample text) and the file reads. Blocking reads of a
//! few small files and one directory listing: call [`read`] from a blocking thread. It must
//! never fail the checker: every error is a missing reading.

use std::path::Path;

/// One look at the process and the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    /// Memory the node may use: the cgroup's limit when it has one below the host's
    /// memory, else the host's `MemTotal` (bytes).
    pub mem_total: Option<u64>,
    /// Memory in use in that scope: the cgroup's `memory.current`, else `MemTotal -
    /// MemAvailable` (bytes).
    pub mem_used: Option<u64>,
    /// This process's resident memory (bytes).
    pub proc_rss: Option<u64>,
    /// This process's open file descriptors.
    pub fds_open: Option<u64>,
    /// Its soft limit on them (`ulimit -n`).
    pub fds_max: Option<u64>,
}

impl Readings {
    /// Memory in use, percent of the total.
    pub fn sysmem_percent(&self) -> Option<f64> {
        percent(self.mem_used?, self.mem_total?)
    }

    /// This process's resident memory, percent of the total.
    pub fn procmem_percent(&self) -> Option<f64> {
        percent(self.proc_rss?, self.mem_total?)
    }

    /// Open file descriptors, percent of the limit.
    pub fn fd_percent(&self) -> Option<f64> {
        percent(self.fds_open?, self.fds_max?)
    }
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Reads everything now (blocking).
pub fn read() -> Readings {
    let text = |p: &str| std::fs::read_to_string(p).ok();
    let meminfo = text("/proc/meminfo").map(|t| parse_meminfo(&t));
    let (host_total, host_used) = meminfo.unwrap_or((None, None));
    let cg_max = text("/sys/fs/cgroup/memory.max").and_then(|t| parse_cgroup_max(&t));
    let cg_current = text("/sys/fs/cgroup/memory.current").and_then(|t| t.trim().parse().ok());
    let (mem_total, mem_used) = match (cg_max, cg_current, host_total) {
        (Some(max), Some(cur), Some(host)) if max < host => (Some(max), Some(cur)),
        (Some(max), Some(cur), None) => (Some(max), Some(cur)),
        _ => (host_total, host_used),
    };
    Readings {
        mem_total,
        mem_used,
        proc_rss: text("/proc/self/status").and_then(|t| status_kib(&t, "VmRSS:")),
        fds_open: count_entries(Path::new("/proc/self/fd")),
        fds_max: text("/proc/self/limits").and_then(|t| parse_max_open_files(&t)),
    }
}

/// `/proc/meminfo`: (`MemTotal`, `MemTotal - MemAvailable`) in bytes.
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let total = status_kib(text, "MemTotal:");
    let available = status_kib(text, "MemAvailable:");
    let used = match (total, available) {
        (Some(t), Some(a)) => Some(t.saturating_sub(a)),
        _ => None,
    };
    (total, used)
}

/// A `Key:   123 kB` line of `/proc/meminfo` or `/proc/self/status`, in bytes.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// cgroup v2 `memory.max`: a byte count, or `max` (no limit: `None`).
pub fn parse_cgroup_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The soft limit of the `Max open files` line of `/proc/self/limits` (`None` when
/// `unlimited`).
pub fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Entries of a directory (the process's open descriptors), `None` if unreadable.
fn count_entries(dir: &Path) -> Option<u64> {
    let n = std::fs::read_dir(dir).ok()?.count();
    u64::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let meminfo =
            "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            (Some(16_000_000 * 1024), Some(12_000_000 * 1024))
        );
        assert_eq!(parse_meminfo("garbage"), (None, None));
        let status = "Name:\tx\nVmRSS:\t   2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(parse_cgroup_max("max\n"), None);
        assert_eq!(parse_cgroup_max("1073741824\n"), Some(1 << 30));
    }

    #[test]
    fn percentages() {
        let r = Readings {
            mem_total: Some(200),
            mem_used: Some(150),
            proc_rss: Some(10),
            fds_open: Some(9),
            fds_max: Some(10),
        };
        assert_eq!(r.sysmem_percent(), Some(75.0));
        assert_eq!(r.procmem_percent(), Some(5.0));
        assert_eq!(r.fd_percent(), Some(90.0));
        assert_eq!(Readings::default().fd_percent(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read() {
        let r = read();
        assert!(r.mem_total.is_some_and(|t| t > 0), "{r:?}");
        assert!(r.proc_rss.is_some_and(|t| t > 0), "{r:?}");
        assert!(r.fds_open.is_some_and(|n| n >= 3), "{r:?}");
    }
}
