//! `[sys_topics]`: what the broker publishes under `$SYS/brokers/{node}/...` and how often,
//! with EMQX 5's names (`sys_msg_interval`, `sys_heartbeat_interval`,
//! `sys_event_messages`). Intervals are EMQX durations (`"1m"`, `"30s"`) or `"disabled"`;
//! [`SysTopicsConfig::check`] bounds them.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::flapping::parse_duration;

/// Shortest interval accepted (a shorter one would make `$SYS` a load of its own).
pub const MIN_SYS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval accepted.
pub const MAX_SYS_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `$SYS` topics, as EMQX 5's `sys_topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SysTopicsConfig {
    /// How often this node publishes its `stats/...` and `metrics/...` topics (`"1m"`, 1 s
    /// to 1 day); `"disabled"` (or `"0s"`) turns them off. The retained `version` and
    /// `sysdescr` topics are written at start whatever this says.
    pub sys_msg_interval: String,
    /// How often this node publishes its `uptime` (seconds) and `datetime` (RFC 3339, UTC)
    /// topics (`"30s"`, 1 s to 1 day); `"disabled"` (or `"0s"`) turns them off.
    pub sys_heartbeat_interval: String,
    /// Client event messages (`$SYS/brokers/{node}/clients/{clientid}/...`).
    pub sys_event_messages: SysEventMessages,
}

impl Default for SysTopicsConfig {
    fn default() -> Self {
        SysTopicsConfig {
            sys_msg_interval: "1m".into(),
            sys_heartbeat_interval: "30s".into(),
            sys_event_messages: SysEventMessages::default(),
        }
    }
}

/// `sys_topics.sys_event_messages`: which client events are published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SysEventMessages {
    /// Publish `$SYS/brokers/{node}/clients/{clientid}/connected` (JSON, QoS 0, not
    /// retained) when a client's CONNECT succeeds.
    pub client_connected: bool,
    /// Publish `$SYS/brokers/{node}/clients/{clientid}/disconnected` (JSON, QoS 0, not
    /// retained) when a connected client's connection ends, with the reason.
    pub client_disconnected: bool,
}

impl Default for SysEventMessages {
    fn default() -> Self {
        SysEventMessages {
            client_connected: true,
            client_disconnected: true,
        }
    }
}

impl SysTopicsConfig {
    /// `sys_msg_interval`, parsed; `None` when disabled (validation refused an unreadable
    /// value: the default otherwise).
    pub fn msg_interval(&self) -> Option<Duration> {
        parse_interval(&self.sys_msg_interval).unwrap_or(Some(Duration::from_secs(60)))
    }

    /// `sys_heartbeat_interval`, parsed; `None` when disabled (validation refused an
    /// unreadable value: the default otherwise).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        parse_interval(&self.sys_heartbeat_interval).unwrap_or(Some(Duration::from_secs(30)))
    }

    /// The key and the reason of the first invalid setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        parse_interval(&self.sys_msg_interval).map_err(|e| ("sys_topics.sys_msg_interval", e))?;
        parse_interval(&self.sys_heartbeat_interval)
            .map_err(|e| ("sys_topics.sys_heartbeat_interval", e))?;
        Ok(())
    }
}

/// `"disabled"` or a zero duration: `None`; otherwise a duration within
/// [`MIN_SYS_INTERVAL`]..=[`MAX_SYS_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Option<Duration>, String> {
    if s.trim() == "disabled" {
        return Ok(None);
    }
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Ok(None);
    }
    if !(MIN_SYS_INTERVAL..=MAX_SYS_INTERVAL).contains(&d) {
        return Err(format!(
            "{s:?} must be \"disabled\" or between {}s and {}s",
            MIN_SYS_INTERVAL.as_secs(),
            MAX_SYS_INTERVAL.as_secs()
        ));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_emqx_s() {
        let d = SysTopicsConfig::default();
        assert_eq!(d.check(), Ok(()));
        assert_eq!(d.msg_interval(), Some(Duration::from_secs(60)));
        assert_eq!(d.heartbeat_interval(), Some(Duration::from_secs(30)));
        assert!(d.sys_event_messages.client_connected);
        assert!(d.sys_event_messages.client_disconnected);
    }

    #[test]
    fn disabled_and_zero_turn_off_and_bad_values_name_their_key() {
        assert_eq!(parse_interval("disabled"), Ok(None));
        assert_eq!(parse_interval("0s"), Ok(None));
        assert_eq!(parse_interval("0ms"), Ok(None));
        assert_eq!(parse_interval("1s"), Ok(Some(Duration::from_secs(1))));
        assert_eq!(parse_interval("1d"), Ok(Some(Duration::from_secs(86_400))));
        for bad in ["500ms", "2d", "soon", "", "-1s", "enabled"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        let msg = SysTopicsConfig {
            sys_msg_interval: "10x".into(),
            ..SysTopicsConfig::default()
        };
        assert_eq!(
            msg.check().map_err(|e| e.0),
            Err("sys_topics.sys_msg_interval")
        );
        let hb = SysTopicsConfig {
            sys_heartbeat_interval: "100ms".into(),
            ..SysTopicsConfig::default()
        };
        assert_eq!(
            hb.check().map_err(|e| e.0),
            Err("sys_topics.sys_heartbeat_interval")
        );
        let off = SysTopicsConfig {
            sys_msg_interval: "disabled".into(),
            sys_heartbeat_interval: "0s".into(),
            ..SysTopicsConfig::default()
        };
        assert_eq!(off.check(), Ok(()));
        assert_eq!((off.msg_interval(), off.heartbeat_interval()), (None, None));
    }
}
