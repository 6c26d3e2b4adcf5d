//! `[alarms]`: the replicant's alarm checks (how often, their thresholds) and the alarm
//! webhook (where activations and deactivations are POSTed). The thresholds take EMQX's
//! defaults where EMQX has the same check (`sysmon.os.sysmem_high_watermark` 70 %,
//! `sysmon.os.procmem_high_watermark` 5 %). Durations are written as EMQX writes them
//! (`"10s"`, see [`parse_duration`]).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse_duration;

/// Alarm checks and the alarm webhook.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// How often the conditions are checked (`"10s"`; 10 ms to 1 h). An alarm that needs
    /// its condition to last (replication lag, a peer link down) needs it on two checks in
    /// a row.
    pub check_interval: String,
    /// `high_system_memory_usage` when the host's (or the cgroup's) memory in use passes
    /// this percentage (EMQX's `sysmon.os.sysmem_high_watermark`); cleared 5 points below.
    pub sysmem_high_watermark: f64,
    /// `high_process_memory_usage` when this process's resident memory passes this
    /// percentage of the host's (or the cgroup's) memory (EMQX's
    /// `sysmon.os.procmem_high_watermark`); cleared at 90 % of it.
    pub procmem_high_watermark: f64,
    /// `high_fd_usage` when the open file descriptors pass this percentage of the process's
    /// limit (`ulimit -n`); cleared 5 points below.
    pub fd_high_watermark: f64,
    /// `replication_lag` when the local replica is more than this many log entries behind
    /// the core group's commit index on two checks in a row.
    pub replication_lag_threshold: u64,
    /// `certificate_expiring:{listener}` when a TLS listener's certificate expires within
    /// this many days (0: never).
    pub cert_expiry_days: u32,
    /// Deactivated alarms kept for `GET /api/v5/alarms?activated=false` (the oldest go
    /// first; at least 1).
    pub history_size: usize,
    /// URLs every activation and deactivation is POSTed to as JSON (`http://` or
    /// `https://`). Empty: no webhook.
    pub webhook_urls: Vec<String>,
    /// Headers sent with every webhook request (e.g. `Authorization`); their values are
    /// never logged.
    pub webhook_headers: BTreeMap<String, String>,
    /// Longest one webhook request may take (`"5s"`; 10 ms to 1 min).
    pub webhook_timeout: String,
    /// Attempts after the first for one notification that failed (a connection error, a
    /// timeout or a status other than 2xx), with a back-off doubling from 200 ms to 10 s
    /// (at most 100).
    pub webhook_max_retries: u32,
    /// Notifications waiting per URL before new ones are dropped (counted in
    /// `meshmq_alarm_webhook_failures_total{reason="queue_full"}`; at least 1).
    pub webhook_queue_len: usize,
    /// Bytes of notifications waiting per URL, as for `webhook_queue_len` (at least 1 KiB).
    pub webhook_queue_bytes: usize,
}

impl std::fmt::Debug for AlarmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&String> = self.webhook_headers.keys().collect();
        f.debug_struct("AlarmsConfig")
            .field("check_interval", &self.check_interval)
            .field("sysmem_high_watermark", &self.sysmem_high_watermark)
            .field("procmem_high_watermark", &self.procmem_high_watermark)
            .field("fd_high_watermark", &self.fd_high_watermark)
            .field("replication_lag_threshold", &self.replication_lag_threshold)
            .field("cert_expiry_days", &self.cert_expiry_days)
            .field("history_size", &self.history_size)
            .field("webhook_urls", &self.webhook_urls.len())
            .field("webhook_headers (values redacted)", &headers)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("webhook_max_retries", &self.webhook_max_retries)
            .field("webhook_queue_len", &self.webhook_queue_len)
            .field("webhook_queue_bytes", &self.webhook_queue_bytes)
            .finish()
    }
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        Self {
            check_interval: "10s".into(),
            sysmem_high_watermark: 70.0,
            procmem_high_watermark: 5.0,
            fd_high_watermark: 80.0,
            replication_lag_threshold: 10_000,
            cert_expiry_days: 30,
            history_size: 1000,
            webhook_urls: Vec::new(),
            webhook_headers: BTreeMap::new(),
            webhook_timeout: "5s".into(),
            webhook_max_retries: 3,
            webhook_queue_len: 1000,
            webhook_queue_bytes: 4 << 20,
        }
    }
}

/// Longest `check_interval`.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest `webhook_timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest `check_interval` and `webhook_timeout`.
const MIN_DURATION: Duration = Duration::from_millis(10);

impl AlarmsConfig {
    /// `check_interval`, parsed (validation refused an unreadable one: 10 s otherwise).
    pub fn interval(&self) -> Duration {
        parse_duration(&self.check_interval).unwrap_or(Duration::from_secs(10))
    }

    /// `webhook_timeout`, parsed (validation refused an unreadable one: 5 s otherwise).
    pub fn timeout(&self) -> Duration {
        parse_duration(&self.webhook_timeout).unwrap_or(Duration::from_secs(5))
    }

    /// The key and the reason of the first invalid setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let bounded = |key, s: &str, max: Duration| match parse_duration(s) {
            Ok(d) if d >= MIN_DURATION && d <= max => Ok(()),
            Ok(_) => Err((
                key,
                format!("{s:?} must be between 10ms and {}s", max.as_secs()),
            )),
            Err(e) => Err((key, e)),
        };
        bounded("alarms.check_interval", &self.check_interval, MAX_INTERVAL)?;
        bounded("alarms.webhook_timeout", &self.webhook_timeout, MAX_TIMEOUT)?;
        for (key, v) in [
            ("alarms.sysmem_high_watermark", self.sysmem_high_watermark),
            ("alarms.procmem_high_watermark", self.procmem_high_watermark),
            ("alarms.fd_high_watermark", self.fd_high_watermark),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err((key, format!("{v} is not a percentage (0 to 100)")));
            }
        }
        if self.webhook_max_retries > 100 {
            return Err(("alarms.webhook_max_retries", "must be at most 100".into()));
        }
        if self.history_size == 0 {
            return Err(("alarms.history_size", "must be at least 1".into()));
        }
        if self.webhook_queue_len == 0 {
            return Err(("alarms.webhook_queue_len", "must be at least 1".into()));
        }
        if self.webhook_queue_bytes < 1024 {
            return Err(("alarms.webhook_queue_bytes", "must be at least 1024".into()));
        }
        for url in &self.webhook_urls {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_whitespace) {
                return Err((
                    "alarms.webhook_urls",
                    "every URL must be an http:// or https:// URL without spaces".into(),
                ));
            }
        }
        for (name, value) in &self.webhook_headers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            // The value is never repeated: it may be a token.
            if !name_ok || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err((
                    "alarms.webhook_headers",
                    "header names are letters, digits, - and _; values have no line breaks".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        let d = AlarmsConfig::default();
        assert_eq!(d.check(), Ok(()));
        assert_eq!(d.interval(), Duration::from_secs(10));
        let key = |c: AlarmsConfig| c.check().map_err(|e| e.0);
        let bad = [
            (
                AlarmsConfig {
                    check_interval: "2h".into(),
                    ..d.clone()
                },
                "alarms.check_interval",
            ),
            (
                AlarmsConfig {
                    webhook_timeout: "soon".into(),
                    ..d.clone()
                },
                "alarms.webhook_timeout",
            ),
            (
                AlarmsConfig {
                    fd_high_watermark: 101.0,
                    ..d.clone()
                },
                "alarms.fd_high_watermark",
            ),
            (
                AlarmsConfig {
                    webhook_urls: vec!["ftp://x".into()],
                    ..d.clone()
                },
                "alarms.webhook_urls",
            ),
            (
                AlarmsConfig {
                    webhook_headers: [("Authorization".into(), "a\r\nb".into())].into(),
                    ..d.clone()
                },
                "alarms.webhook_headers",
            ),
            (
                AlarmsConfig {
                    history_size: 0,
                    ..d.clone()
                },
                "alarms.history_size",
            ),
        ];
        for (c, want) in bad {
            assert_eq!(key(c), Err(want));
        }
    }

    #[test]
    fn debug_never_shows_header_values() {
        let c = AlarmsConfig {
            webhook_headers: [("Authorization".into(), "Bearer s3cr3t".into())].into(),
            ..AlarmsConfig::default()
        };
        let text = format!("{c:?}");
        assert!(
            text.contains("Authorization") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
}
