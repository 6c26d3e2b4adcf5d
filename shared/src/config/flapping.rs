//! `[flapping_detect]`: EMQX's flapping detection (a client id that disconnects too often
//! within a window is banned for a while). Durations are written as EMQX writes them
//! (`"1m"`, `"30s"`, `"500ms"`, `"2h"`, `"1d"`); [`parse_duration`] reads them.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Flapping detection, as EMQX 5's `flapping_detect`: every disconnect of a client (after a
/// successful CONNECT) is counted per client id on the node that held it; when a client id
/// reaches `max_count` disconnects within `window_time` of its first counted one, the
/// client id is banned for `ban_time` (a `banned` row with `by = "flapping detector"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FlappingDetectConfig {
    /// Turn flapping detection on.
    pub enable: bool,
    /// Disconnects of one client id within `window_time` that ban it (at least 1).
    pub max_count: u32,
    /// The window the disconnects are counted in, from the first one (`"1m"`; 1 s to 1 day).
    pub window_time: String,
    /// How long a flapping client id stays banned (`"5m"`; 1 s to 10 years).
    pub ban_time: String,
}

impl Default for FlappingDetectConfig {
    fn default() -> Self {
        Self {
            enable: false,
            max_count: 15,
            window_time: "1m".into(),
            ban_time: "5m".into(),
        }
    }
}

/// Longest `window_time`.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest `ban_time`.
pub const MAX_BAN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl FlappingDetectConfig {
    /// `window_time`, parsed (validation refused an unreadable one: 1 min otherwise).
    pub fn window(&self) -> Duration {
        parse_duration(&self.window_time).unwrap_or(Duration::from_secs(60))
    }

    /// `ban_time`, parsed (validation refused an unreadable one: 5 min otherwise).
    pub fn ban(&self) -> Duration {
        parse_duration(&self.ban_time).unwrap_or(Duration::from_secs(300))
    }

    /// The key and the reason of the first invalid setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_count == 0 {
            return Err(("flapping_detect.max_count", "must be at least 1".into()));
        }
        let bounded = |key, s: &str, max: Duration| match parse_duration(s) {
            Ok(d) if d >= Duration::from_secs(1) && d <= max => Ok(()),
            Ok(_) => Err((
                key,
                format!("{s:?} must be between 1s and {}s", max.as_secs()),
            )),
            Err(e) => Err((key, e)),
        };
        bounded("flapping_detect.window_time", &self.window_time, MAX_WINDOW)?;
        bounded("flapping_detect.ban_time", &self.ban_time, MAX_BAN)
    }
}

/// Reads `"<number><unit>"` with unit `ms`, `s`, `m`, `h` or `d` (EMQX's duration form).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"30s\" or \"5m\""))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m, h or d")),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_emqx_writes_them() {
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "",
            "m",
            "5",
            "5 m",
            "-1s",
            "1.5m",
            "5y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_emqx_s_and_bad_values_name_their_key() {
        let d = FlappingDetectConfig::default();
        assert_eq!(d.check(), Ok(()));
        assert_eq!(
            (d.window(), d.ban()),
            (Duration::from_secs(60), Duration::from_secs(300))
        );
        let zero = FlappingDetectConfig {
            max_count: 0,
            ..d.clone()
        };
        assert_eq!(
            zero.check().map_err(|e| e.0),
            Err("flapping_detect.max_count")
        );
        let win = FlappingDetectConfig {
            window_time: "2d".into(),
            ..d.clone()
        };
        assert_eq!(
            win.check().map_err(|e| e.0),
            Err("flapping_detect.window_time")
        );
        let ban = FlappingDetectConfig {
            ban_time: "soon".into(),
            ..d
        };
        assert_eq!(
            ban.check().map_err(|e| e.0),
            Err("flapping_detect.ban_time")
        );
    }
}
