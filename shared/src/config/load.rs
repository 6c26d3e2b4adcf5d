//! Loading a [`Config`]: defaults → TOML file → `MESHMQ_` environment → command-line flags,
//! then validation.
//!
//! Owns the layering order, the mapping of environment variables to keys
//! (`MESHMQ_MQTT__SERVER_KEEPALIVE` → `mqtt.server_keepalive`) and the checks that run on the
//! merged result. It must never read the process environment anywhere but [`load`] (so
//! [`load_with_env`] stays testable) and never panic on a bad file or value: every problem is
//! a [`ConfigError`] that names the key and where the value came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Config;
use super::open_listener;

/// Prefix of the environment variables that configure a node.
pub const ENV_PREFIX: &str = "MESHMQ_";
/// Separator between key levels in an environment variable name.
pub const ENV_SEPARATOR: &str = "__";

/// The environment variable that sets `key` (`listeners.mqtt_bind` →
/// `MESHMQ_LISTENERS__MQTT_BIND`).
pub fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', ENV_SEPARATOR)
    )
}

/// How an error names setting `key` for an operator: the key and its environment variable,
/// `listeners.mqtt_bind / MESHMQ_LISTENERS__MQTT_BIND`.
pub fn setting(key: &str) -> String {
    format!("{key} / {}", env_var(key))
}

/// Largest packet size MQTT can express (a 4-byte remaining length plus the fixed header).
const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_460;
/// Smallest packet size we accept as a limit: anything lower cannot carry a useful CONNECT.
const MIN_PACKET_SIZE_LIMIT: u32 = 64;
/// MQTT requires servers to accept client ids of 1 to 23 bytes.
const MIN_CLIENTID_LEN: usize = 23;

/// Values given on the command line; each `Some` wins over every other source.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--mqtt-bind`: `listeners.mqtt_bind`.
    pub mqtt_bind: Option<SocketAddr>,
    /// `--ws-bind`: `listeners.ws_bind`.
    pub ws_bind: Option<SocketAddr>,
    /// `--http-bind`: `listeners.http_bind`.
    pub http_bind: Option<SocketAddr>,
    /// `--data-dir`: `node.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--node-name`: `node.name`.
    pub node_name: Option<String>,
    /// `--core`: `cluster.cores` (when non-empty).
    pub cores: Vec<String>,
    /// `--certs-dir`: `cluster.certs_dir`.
    pub certs_dir: Option<PathBuf>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file given with `--config` could not be read.
    #[error("cannot read the config file {} (--config): {source}", path.display())]
    File {
        /// The file that was asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A source could not be parsed or a value has the wrong type or an unknown key; the
    /// message names the key and its source (file path or environment variable).
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    /// A listener setting is wrong (its key names the listener).
    #[error("invalid configuration ({}): {reason}", setting(key))]
    Listener {
        /// Dotted key path, e.g. `listeners.ssl.default.ssl_options.certfile`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The merged configuration is well-formed but a value is out of range.
    #[error("invalid configuration ({}): {reason}", setting(key))]
    Invalid {
        /// Dotted key path, e.g. `mqtt.receive_maximum`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}

/// Loads the configuration from `file` (if any), the process environment and `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_with_env(file, &env, overrides)
}

/// Like [`load`], but takes the environment as `(name, value)` pairs instead of reading the
/// process environment. Names without the `MESHMQ_` prefix are ignored.
pub fn load_with_env(
    file: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        // Toml::file silently skips a missing file; a file the operator named must exist.
        std::fs::metadata(path)
            .and_then(|m| match m.is_file() {
                true => Ok(()),
                false => Err(std::io::Error::other("not a regular file")),
            })
            .map_err(|source| ConfigError::File {
                path: path.to_path_buf(),
                source,
            })?;
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(EnvPairs::new(env));
    let mut config: Config = figment.extract()?;
    apply_overrides(&mut config, overrides);
    validate(&config)?;
    Ok(config)
}

fn apply_overrides(config: &mut Config, o: &Overrides) {
    if !o.cores.is_empty() {
        config.cluster.cores.clone_from(&o.cores);
    }
    if let Some(d) = &o.certs_dir {
        config.cluster.certs_dir = Some(d.clone());
    }
    if let Some(a) = o.mqtt_bind {
        config.listeners.mqtt_bind = a;
    }
    if let Some(a) = o.ws_bind {
        config.listeners.ws_bind = Some(a);
    }
    if let Some(a) = o.http_bind {
        config.listeners.http_bind = Some(a);
    }
    if let Some(d) = &o.data_dir {
        config.node.data_dir = d.clone();
    }
    if let Some(n) = &o.node_name {
        config.node.name = n.clone();
    }
}

/// Shortest `listeners.api_key` accepted: as for a secret a person chooses in an API key
/// bootstrap file, 16 characters keep it out of reach of guessing at the rate an HTTP
/// listener answers.
pub const MIN_STATIC_API_KEY_LEN: usize = 16;

/// `listeners.api_key`, when set, is at least [`MIN_STATIC_API_KEY_LEN`] characters. The
/// error names the setting, never the value.
pub fn check_static_api_key(config: &Config) -> Result<(), ConfigError> {
    match config.listeners.api_key.as_deref() {
        Some(k) if k.chars().count() < MIN_STATIC_API_KEY_LEN => Err(ConfigError::Invalid {
            key: "listeners.api_key",
            reason: format!(
                "must be at least {MIN_STATIC_API_KEY_LEN} characters when set (a shorter \
                 key can be guessed)"
            ),
        }),
        _ => Ok(()),
    }
}

/// Range checks on the merged configuration.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
    if config.node.name.trim().is_empty() {
        return invalid("node.name", "must not be empty".into());
    }
    if config.listeners.max_connections == 0 {
        return invalid("listeners.max_connections", "must be greater than 0".into());
    }
    check_static_api_key(config)?;
    if let Some(http) = config.listeners.http_bind
        && !http.ip().is_loopback()
        && config.listeners.api_key.is_none()
        && config.api_key.bootstrap_file.is_none()
    {
        let reason = format!(
            "the HTTP API {http} is not on loopback and has no key: set listeners.api_key \
             or api_key.bootstrap_file (operator routes then need a key), or bind http_bind \
             to 127.0.0.1"
        );
        return invalid("listeners.api_key", reason);
    }
    if config.listeners.backlog == 0 {
        return invalid("listeners.backlog", "must be greater than 0".into());
    }
    if let Err((key, reason)) = config.listeners.resolve() {
        return Err(ConfigError::Listener { key, reason });
    }
    if let Some(open) = open_listener(config) {
        let reason = format!(
            "no authenticator is configured and the MQTT listener {open} is not on loopback: \
             add an [[authentication]] entry, or set listeners.allow_anonymous = true to \
             accept any client"
        );
        return invalid("listeners.allow_anonymous", reason);
    }
    if let Err((key, reason)) = config.sys_topics.check() {
        return invalid(key, reason);
    }
    if let Err((key, reason)) = config.trace.check() {
        return invalid(key, reason);
    }
    for (i, a) in config.authentication.iter().enumerate() {
        super::authn_checks::check(a).map_err(|(key, e)| ConfigError::Invalid {
            key,
            reason: format!("authentication[{i}] ({}): {e}", a.id()),
        })?;
    }
    if let Err((key, reason)) = super::authz::validate(&config.authorization) {
        return invalid(key, reason);
    }
    validate_live(config)?;
    if config.listeners.send_timeout_ms == 0 {
        return invalid("listeners.send_timeout_ms", "must be greater than 0".into());
    }
    for (key, value) in [
        (
            "cluster.peer_queue_len",
            config.cluster.peer_queue_len as u64,
        ),
        (
            "cluster.peer_queue_bytes",
            config.cluster.peer_queue_bytes as u64,
        ),
        (
            "cluster.follow_max_snapshot_bytes",
            config.cluster.follow_max_snapshot_bytes,
        ),
    ] {
        if value == 0 {
            return invalid(key, "must be greater than 0".into());
        }
    }
    if config.cluster.transact_timeout_ms < 100 {
        return invalid(
            "cluster.transact_timeout_ms",
            format!(
                "must be at least 100, got {}",
                config.cluster.transact_timeout_ms
            ),
        );
    }
    if config.cluster.transact_linger_ms > 100 {
        return invalid(
            "cluster.transact_linger_ms",
            format!(
                "must be at most 100, got {}",
                config.cluster.transact_linger_ms
            ),
        );
    }
    Ok(())
}

/// The checks of the sections that may change at run time (`[mqtt]`, `[flapping_detect]`,
/// `[alarms]`, `[log]`): part of [`validate`], and what a run-time change
/// (`PUT /api/v5/configs`) is checked with, so both refuse the same values with the same
/// message.
pub fn validate_live(config: &Config) -> Result<(), ConfigError> {
    let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
    let m = &config.mqtt;
    for check in [
        config.flapping_detect.check(),
        config.alarms.check(),
        config.log.check(),
    ] {
        if let Err((key, reason)) = check {
            return invalid(key, reason);
        }
    }
    if !(MIN_PACKET_SIZE_LIMIT..=MAX_PACKET_SIZE_LIMIT).contains(&m.max_packet_size) {
        let reason = format!(
            "must be between {MIN_PACKET_SIZE_LIMIT} and {MAX_PACKET_SIZE_LIMIT}, got {}",
            m.max_packet_size
        );
        return invalid("mqtt.max_packet_size", reason);
    }
    if m.receive_maximum == 0 {
        return invalid("mqtt.receive_maximum", "must be greater than 0".into());
    }
    if m.max_inflight == 0 {
        return invalid("mqtt.max_inflight", "must be greater than 0".into());
    }
    if m.max_clientid_len < MIN_CLIENTID_LEN {
        let reason = format!(
            "must be at least {MIN_CLIENTID_LEN}, got {}",
            m.max_clientid_len
        );
        return invalid("mqtt.max_clientid_len", reason);
    }
    if m.connect_timeout == 0 {
        return invalid("mqtt.connect_timeout", "must be greater than 0".into());
    }
    if m.await_rel_timeout == 0 {
        return invalid("mqtt.await_rel_timeout", "must be greater than 0".into());
    }
    for (key, value) in [
        ("mqtt.max_mqueue_len", m.max_mqueue_len as u64),
        ("mqtt.max_mqueue_bytes", m.max_mqueue_bytes as u64),
        ("mqtt.max_node_mqueue_bytes", m.max_node_mqueue_bytes),
        (
            "mqtt.max_write_buffer_bytes",
            m.max_write_buffer_bytes as u64,
        ),
        ("mqtt.max_topic_alias_bytes", m.max_topic_alias_bytes as u64),
    ] {
        if value == 0 {
            return invalid(key, "must be greater than 0".into());
        }
    }
    if m.max_node_mqueue_bytes < m.max_mqueue_bytes as u64 {
        let reason = format!(
            "must be at least mqtt.max_mqueue_bytes ({}), got {}",
            m.max_mqueue_bytes, m.max_node_mqueue_bytes
        );
        return invalid("mqtt.max_node_mqueue_bytes", reason);
    }
    Ok(())
}

/// A figment provider over `(name, value)` pairs that behaves like
/// `Env::prefixed("MESHMQ_").split("__")`: the prefix is stripped (case-insensitively),
/// `__` separates levels, keys are lowercased and values are parsed like figment's `Env`
/// does (numbers and booleans become typed values, anything else stays a string).
struct EnvPairs {
    /// Matching variables as (dotted lowercase key, raw value), in input order.
    pairs: Vec<(String, String)>,
}

impl EnvPairs {
    fn new(env: &[(String, String)]) -> Self {
        let pairs = env
            .iter()
            .filter_map(|(k, v)| Some((env_key(k)?, v.clone())))
            .collect();
        EnvPairs { pairs }
    }
}

/// Variables with the prefix that belong to a tool, not to the node's settings: read by
/// `replicant-node ctl`, so a node's environment may carry them without failing its start.
const NOT_SETTINGS: &[&str] = &["MESHMQ_CTL_API_KEY"];

/// `MESHMQ_MQTT__SERVER_KEEPALIVE` → `mqtt.server_keepalive`; `None` for other variables
/// (and for [`NOT_SETTINGS`]).
fn env_key(name: &str) -> Option<String> {
    let name = name.trim();
    if NOT_SETTINGS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return None;
    }
    let head = name.get(..ENV_PREFIX.len())?;
    if !head.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let rest = name.get(ENV_PREFIX.len()..)?;
    let key = rest.replace(ENV_SEPARATOR, ".");
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return None;
    }
    Some(key.to_ascii_lowercase())
}

impl Provider for EnvPairs {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}` environment variable(s)")).interpolater(
            |_: &Profile, keys: &[&str]| {
                let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
                format!("{ENV_PREFIX}{}", upper.join(ENV_SEPARATOR))
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, raw) in &self.pairs {
            let value: Value = match raw.parse() {
                Ok(v) => v,
                Err(never) => match never {},
            };
            if let Value::Dict(_, nested) = figment::util::nest(key, value) {
                merge_dict(&mut dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Merges `from` into `into`; nested dictionaries merge, other values from `from` win.
fn merge_dict(into: &mut Dict, from: Dict) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
                merge_dict(existing, incoming)
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
#[path = "load_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "authz_tests.rs"]
mod authz_tests;

#[cfg(test)]
#[path = "listeners_tests.rs"]
mod listeners_tests;
