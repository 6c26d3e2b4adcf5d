//! Run-time configuration: the keys an operator may change on a running cluster
//! (`PUT /api/v5/configs`), and how a node builds its effective configuration from its base
//! (file + environment + flags) and the cluster's overrides (dotted key → JSON value).
//!
//! Owns the allow-list ([`RUNTIME_KEYS`]) and the merge ([`apply_overrides`]), which checks
//! the result with the loader's own checks ([`super::validate_live`]), so a value the file
//! would refuse is refused here with the same message. It never stores or applies anything:
//! the replicant keeps the overrides in the cluster `settings` table and swaps what it
//! derives from the result.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde_json::Value;

use super::Config;

/// The keys that may change at run time, as dotted paths. Every other key needs a restart.
pub const RUNTIME_KEYS: &[&str] = &[
    "mqtt.server_keepalive",
    "mqtt.receive_maximum",
    "mqtt.max_inflight",
    "mqtt.max_awaiting_rel",
    "mqtt.await_rel_timeout",
    "mqtt.max_mqueue_len",
    "mqtt.max_mqueue_bytes",
    "mqtt.mqueue_store_qos0",
    "mqtt.mqueue_drop_policy",
    "mqtt.max_session_expiry",
    "mqtt.max_topic_alias",
    "mqtt.max_topic_alias_bytes",
    "mqtt.max_subscriptions",
    "mqtt.max_clientid_len",
    "mqtt.max_retained_messages",
    "mqtt.max_retained_bytes",
    "flapping_detect.enable",
    "flapping_detect.max_count",
    "flapping_detect.window_time",
    "flapping_detect.ban_time",
    "alarms.check_interval",
    "alarms.sysmem_high_watermark",
    "alarms.procmem_high_watermark",
    "alarms.fd_high_watermark",
    "alarms.replication_lag_threshold",
    "alarms.cert_expiry_days",
    "log.level",
    "log.directives",
];

/// Whether `key` (dotted) may change at run time.
pub fn is_runtime_key(key: &str) -> bool {
    RUNTIME_KEYS.contains(&key)
}

/// Why overrides could not be applied; every variant names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// The key is not in [`RUNTIME_KEYS`] (or does not exist).
    #[error(
        "{0} cannot be changed at run time: it needs a restart (set it in the config file or the environment)"
    )]
    NotRuntime(String),
    /// The value does not have the key's type.
    #[error("{key}: {reason}")]
    Type {
        /// Dotted key.
        key: String,
        /// What serde said.
        reason: String,
    },
    /// The value is out of range (the loader's message).
    #[error("{0}")]
    Invalid(String),
}

/// `base` with every (dotted key, value) of `overrides` set, checked as the loader checks
/// the sections that may change. Every key must be a run-time key. Only the sections the
/// overrides name go through JSON; the rest of `base` is kept as it is.
pub fn apply_overrides(
    base: &Config,
    overrides: &[(String, Value)],
) -> Result<Config, OverrideError> {
    let mut trees: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for (key, value) in overrides {
        let (section, leaf) = key
            .split_once('.')
            .filter(|_| is_runtime_key(key))
            .ok_or_else(|| OverrideError::NotRuntime(key.clone()))?;
        let tree = match trees.entry(section) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                tree_of(base, section)?.ok_or_else(|| OverrideError::NotRuntime(key.clone()))?,
            ),
        };
        tree.insert(leaf.to_owned(), value.clone());
    }
    let mut config = base.clone();
    for (section, tree) in trees {
        set_section(&mut config, section, tree, overrides)?;
    }
    super::validate_live(&config).map_err(|e| OverrideError::Invalid(e.to_string()))?;
    Ok(config)
}

/// Section `section` of `config` as a JSON object; `None` for a section with no run-time key.
fn tree_of(
    config: &Config,
    section: &str,
) -> Result<Option<serde_json::Map<String, Value>>, OverrideError> {
    match section {
        "mqtt" => to_tree(&config.mqtt).map(Some),
        "flapping_detect" => to_tree(&config.flapping_detect).map(Some),
        "alarms" => to_tree(&config.alarms).map(Some),
        "log" => to_tree(&config.log).map(Some),
        _ => Ok(None),
    }
}

/// Replaces section `section` of `config` with `tree` (one [`tree_of`] knows).
fn set_section(
    config: &mut Config,
    section: &str,
    tree: serde_json::Map<String, Value>,
    overrides: &[(String, Value)],
) -> Result<(), OverrideError> {
    match section {
        "mqtt" => config.mqtt = from_tree(tree, section, overrides)?,
        "flapping_detect" => config.flapping_detect = from_tree(tree, section, overrides)?,
        "alarms" => config.alarms = from_tree(tree, section, overrides)?,
        "log" => config.log = from_tree(tree, section, overrides)?,
        _ => return Err(OverrideError::NotRuntime(section.to_owned())),
    }
    Ok(())
}

/// A section as a JSON object.
fn to_tree<T: serde::Serialize>(
    section: &T,
) -> Result<serde_json::Map<String, Value>, OverrideError> {
    match serde_json::to_value(section) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OverrideError::Invalid("a section is not an object".into())),
        Err(e) => Err(OverrideError::Invalid(e.to_string())),
    }
}

/// The section back from JSON; a type error names the key serde points at.
fn from_tree<T: serde::de::DeserializeOwned>(
    tree: serde_json::Map<String, Value>,
    section: &str,
    overrides: &[(String, Value)],
) -> Result<T, OverrideError> {
    serde_path_to_error::deserialize(Value::Object(tree)).map_err(|e| {
        let path = e.path().to_string();
        let key = overrides
            .iter()
            .map(|(k, _)| k.clone())
            .find(|k| {
                k.strip_prefix(section).and_then(|l| l.strip_prefix('.')) == Some(path.as_str())
            })
            .unwrap_or_else(|| format!("{section}.{path}"));
        OverrideError::Type {
            key,
            reason: e.into_inner().to_string(),
        }
    })
}

/// The value of dotted `key` in `config` as JSON (`None` for an unknown key).
pub fn value_of(config: &Config, key: &str) -> Option<Value> {
    let (section, leaf) = key.split_once('.')?;
    tree_of(config, section).ok()??.get(leaf).cloned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use serde_json::json;

    fn one(key: &str, v: Value) -> Vec<(String, Value)> {
        vec![(key.to_owned(), v)]
    }

    #[test]
    fn every_runtime_key_exists_and_round_trips_its_default() {
        let base = Config::default();
        for key in RUNTIME_KEYS {
            let v = value_of(&base, key).unwrap_or_else(|| panic!("{key} is not a config key"));
            let merged = apply_overrides(&base, &one(key, v)).unwrap();
            assert_eq!(merged, base, "{key}");
        }
    }

    #[test]
    fn overrides_apply_and_are_checked_like_the_file() {
        let base = Config::default();
        let c = apply_overrides(
            &base,
            &[
                ("mqtt.max_inflight".into(), json!(7)),
                ("mqtt.server_keepalive".into(), json!(30)),
                ("flapping_detect.window_time".into(), json!("30s")),
            ],
        )
        .unwrap();
        assert_eq!(c.mqtt.max_inflight, 7);
        assert_eq!(c.mqtt.server_keepalive, Some(30));
        assert_eq!(c.flapping_detect.window_time, "30s");
        let e = apply_overrides(&base, &one("mqtt.max_inflight", json!(0))).unwrap_err();
        assert!(e.to_string().contains("mqtt.max_inflight"), "{e}");
        assert!(e.to_string().contains("must be greater than 0"), "{e}");
        let e =
            apply_overrides(&base, &one("flapping_detect.ban_time", json!("soon"))).unwrap_err();
        assert!(e.to_string().contains("flapping_detect.ban_time"), "{e}");
        let e = apply_overrides(&base, &one("mqtt.max_inflight", json!("many"))).unwrap_err();
        assert!(
            matches!(&e, OverrideError::Type { key, .. } if key == "mqtt.max_inflight"),
            "{e}"
        );
    }

    #[test]
    fn alarm_thresholds_and_the_log_filter_apply_and_are_checked_like_the_file() {
        let base = Config::default();
        let c = apply_overrides(
            &base,
            &[
                ("alarms.sysmem_high_watermark".into(), json!(1.5)),
                ("alarms.check_interval".into(), json!("1s")),
                ("alarms.cert_expiry_days".into(), json!(0)),
                ("log.level".into(), json!("debug")),
                ("log.directives".into(), json!("replicant_node::peer=trace")),
            ],
        )
        .unwrap();
        assert_eq!(c.alarms.sysmem_high_watermark, 1.5);
        assert_eq!(c.alarms.check_interval, "1s");
        assert_eq!(c.alarms.cert_expiry_days, 0);
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.log.directives, "replicant_node::peer=trace");
        assert_eq!(c.alarms.webhook_urls, base.alarms.webhook_urls);
        for (key, value, message) in [
            ("alarms.fd_high_watermark", json!(101), "not a percentage"),
            ("alarms.check_interval", json!("2h"), "must be between"),
            ("log.level", json!("loud"), "is not one of"),
            ("log.directives", json!("a=b=c"), "is not a log directive"),
        ] {
            let e = apply_overrides(&base, &one(key, value)).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(key) && text.contains(message),
                "{key}: {text}"
            );
            let loaded = super::super::validate(&apply_unchecked(&base, key, &e));
            assert!(loaded.is_err(), "{key}: the loader refuses it too");
        }
        for key in ["alarms.webhook_urls", "alarms.history_size", "log.format"] {
            let e = apply_overrides(&base, &one(key, json!(1))).unwrap_err();
            assert_eq!(e, OverrideError::NotRuntime(key.into()));
        }
    }

    /// `base` with the value `e` was about: the same bad value set directly, for the loader.
    fn apply_unchecked(base: &Config, key: &str, _e: &OverrideError) -> Config {
        let mut c = base.clone();
        match key {
            "alarms.fd_high_watermark" => c.alarms.fd_high_watermark = 101.0,
            "alarms.check_interval" => c.alarms.check_interval = "2h".into(),
            "log.level" => c.log.level = "loud".into(),
            _ => c.log.directives = "a=b=c".into(),
        }
        c
    }

    #[test]
    fn other_keys_need_a_restart() {
        let base = Config::default();
        for key in [
            "mqtt.max_packet_size",
            "node.name",
            "listeners.api_key",
            "mqtt",
            "nope.x",
        ] {
            let e = apply_overrides(&base, &one(key, json!(1))).unwrap_err();
            assert_eq!(e, OverrideError::NotRuntime(key.into()));
            assert!(e.to_string().contains("needs a restart"));
        }
    }
}
