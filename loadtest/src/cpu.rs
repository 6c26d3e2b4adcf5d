//! CPU time of the broker (summed over its processes when it is a cluster) and of the load
//! generator itself, from `/proc/PID/stat`, so a report can say how the two shared the box
//! during the measurement window.
//!
//! It owns only the reading of `/proc`. It must never fail a run: unreadable processes give
//! `None`.

/// Clock ticks per second of `utime`/`stime` (USER_HZ, 100 on every Linux target we run).
pub const TICKS_PER_SEC: f64 = 100.0;

/// `utime + stime` in clock ticks from the text of a `/proc/PID/stat` file.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After ')' come field 3 (state) ... field 14 (utime), field 15 (stime).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks used so far by `pid`, or by this process when `pid` is `None`.
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_cpu_ticks(&std::fs::read_to_string(path).ok()?)
}

/// CPU ticks used so far by all of `pids`; `None` if the list is empty or any of them
/// cannot be read.
pub fn cpu_ticks_sum(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|&pid| cpu_ticks(Some(pid)))
        .sum::<Option<u64>>()
        .filter(|_| !pids.is_empty())
}

/// Percent of one core used between two tick readings `secs` apart.
pub fn percent(before: Option<u64>, after: Option<u64>, secs: f64) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    (secs > 0.0).then(|| used as f64 / TICKS_PER_SEC / secs * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn percent_of_a_core() {
        assert_eq!(percent(Some(100), Some(300), 2.0), Some(100.0));
        assert_eq!(percent(None, Some(300), 2.0), None);
        assert!(cpu_ticks(None).is_some());
    }

    #[test]
    fn sums_ticks_of_several_processes() {
        let me = std::process::id();
        assert!(cpu_ticks_sum(&[me, me]).is_some());
        assert_eq!(cpu_ticks_sum(&[]), None);
        assert_eq!(cpu_ticks_sum(&[me, u32::MAX]), None);
    }
}
