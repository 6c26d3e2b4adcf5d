//! Run-time configuration on this node: the effective configuration (the node's base
//! configuration from file, environment and flags, with the cluster's run-time overrides on
//! top) and what is derived from it (session and queue limits), swapped as a whole when the
//! overrides change.
//!
//! The overrides live in the cluster `settings` table, namespace [`NS`], one row per dotted
//! key (`mqtt.max_inflight`) holding its JSON value; `PUT /api/v5/configs` ([`api`]) writes
//! them, every node [`watch`]es the namespace and rebuilds. A node starting reads them
//! before it accepts clients (its replica is ready when the context is built).
//!
//! Owns [`Runtime`] (read once per CONNECT, SUBSCRIBE or disconnect, never per message) and
//! the rebuild, which also puts a changed `log.level` / `log.directives` in force in the
//! node's logger (at start too, when the table holds them). The alarm checker reads its
//! thresholds from the effective configuration at each check. It never writes the table
//! itself (the API does) and never logs a value.

pub mod api;

use std::sync::Arc;

use bytes::Bytes;
use core_node::logging::{self, LogError};
use meshmq_proto::tables::SettingRow;
use meshmq_shared::config::runtime::apply_overrides;
use meshmq_shared::config::{Config, LogConfig};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::ctx::Ctx;
use crate::mailbox::QueueLimits;
use crate::session::Limits;

/// The `settings` namespace of the run-time overrides.
pub const NS: &str = "config";

/// The effective configuration and what this node derives from it.
#[derive(Debug)]
pub struct Live {
    /// Base configuration with the cluster's overrides applied.
    pub config: Config,
    /// Session limits (`[mqtt]`), for sessions created from now on.
    pub limits: Limits,
    /// Session queue limits (`[mqtt]`), for sessions created from now on.
    pub queue: QueueLimits,
    /// The override rows this was built from, in key order.
    overrides: Vec<Seen>,
}

impl Live {
    fn new(config: Config, overrides: Vec<Seen>) -> Live {
        Live {
            limits: Limits::from_config(&config.mqtt),
            queue: QueueLimits::of(&config.mqtt),
            config,
            overrides,
        }
    }
}

/// This node's base configuration and the current effective one.
#[derive(Debug)]
pub struct Runtime {
    base: Config,
    current: RwLock<Arc<Live>>,
    refreshing: Mutex<()>,
    /// Bumped after every swap of `current`, for tasks that wait on a key (the alarm
    /// checker's interval).
    swapped: watch::Sender<u64>,
}

impl Runtime {
    /// The base configuration in force (no override yet; see [`refresh`]).
    pub fn new(base: Config) -> Runtime {
        Runtime {
            current: RwLock::new(Arc::new(Live::new(base.clone(), Vec::new()))),
            refreshing: Mutex::new(()),
            swapped: watch::Sender::new(0),
            base,
        }
    }

    /// The effective configuration now.
    pub fn current(&self) -> Arc<Live> {
        self.current.read().clone()
    }

    /// Told (a new value) every time the effective configuration is rebuilt.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.swapped.subscribe()
    }

    /// The configuration from file, environment and flags, without overrides.
    pub fn base(&self) -> &Config {
        &self.base
    }
}

/// One stored override row as last seen: key, version and the value's bytes. The value is
/// compared too: a version restarts at 1 when a key is deleted and set again, so (key,
/// version) alone would keep the old value on a node that did not see the state between.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    key: String,
    version: u64,
    value: Bytes,
}

impl Seen {
    fn of(row: &SettingRow) -> Seen {
        Seen {
            key: row.key.clone(),
            version: row.version,
            value: row.value.clone(),
        }
    }

    /// Whether `row` is this one (key, version and value).
    fn is(&self, row: &SettingRow) -> bool {
        self.key == row.key && self.version == row.version && self.value == row.value
    }
}

/// The overrides in the local replica: (key, JSON value, version); a row whose value is not
/// JSON is skipped with a warning.
pub fn stored(ctx: &Ctx) -> Vec<(String, Value, u64)> {
    let rows: Vec<Seen> = ctx
        .tables
        .core
        .read(|t| t.settings_in(NS).map(Seen::of).collect());
    parsed(&rows)
}

/// The JSON values of `rows`, a row whose value is not JSON skipped with a warning.
fn parsed(rows: &[Seen]) -> Vec<(String, Value, u64)> {
    rows.iter()
        .filter_map(|r| match serde_json::from_slice(&r.value) {
            Ok(v) => Some((r.key.clone(), v, r.version)),
            Err(_) => {
                warn!(key = %r.key, "run-time config row is not JSON; ignored");
                None
            }
        })
        .collect()
}

/// Rebuilds the effective configuration when the stored overrides changed since the last
/// rebuild (a key, a version or a value); true if it did. An override this node cannot
/// apply (a key it does not know as run-time, a value its base refuses together with it) is
/// skipped with a warning; the others apply.
pub fn refresh(ctx: &Ctx) -> bool {
    // One rebuild at a time (the API and the watch both call this): a slower one never
    // swaps in an older state after a newer one.
    let _serial = ctx.runtime.refreshing.lock();
    let current = ctx.runtime.current();
    // Compared in place on the common path (nothing copied, nothing parsed): the replica
    // moves on every applied entry. The rows are copied in the same read when they moved.
    let fresh: Option<Vec<Seen>> = ctx.tables.core.read(|t| {
        let mut rows = t.settings_in(NS);
        let same = current
            .overrides
            .iter()
            .all(|o| rows.next().is_some_and(|r| o.is(r)));
        if same && rows.next().is_none() {
            return None;
        }
        Some(t.settings_in(NS).map(Seen::of).collect())
    });
    let Some(seen) = fresh else {
        return false;
    };
    let runtime = &ctx.runtime;
    let pairs: Vec<(String, Value)> = parsed(&seen).into_iter().map(|(k, v, _)| (k, v)).collect();
    let config = match apply_overrides(&runtime.base, &pairs) {
        Ok(c) => c,
        Err(_) => one_by_one(&runtime.base, &pairs),
    };
    let changed: Vec<&str> = changed_keys(&current.overrides, &seen);
    info!(keys = ?changed, node = %ctx.node(), "run-time configuration applied");
    if config.log != current.config.log {
        apply_log_filter(&config.log);
    }
    *runtime.current.write() = Arc::new(Live::new(config, seen));
    runtime.swapped.send_modify(|n| *n = n.wrapping_add(1));
    true
}

/// Puts `log`'s level and directives in force in this process's logger (they changed in
/// the effective configuration). This replaces a node-local change made through
/// `PUT /api/v5/log/level` since. A process that runs the broker without the node's logger
/// (an embedding program, the tests) has nothing to change.
fn apply_log_filter(log: &LogConfig) {
    match logging::set_log_filter(&log.level, &log.directives) {
        Ok(()) => {}
        Err(LogError::NotInstalled) => {
            debug!("log filter changed in the configuration; no logger of ours to apply it to");
        }
        // The value passed validate_live, which parses it as the logger does.
        Err(e) => warn!(error = %e, "run-time log filter not applied"),
    }
}

/// The overrides applied one at a time, each kept only if the result still checks.
fn one_by_one(base: &Config, pairs: &[(String, Value)]) -> Config {
    let mut kept: Vec<(String, Value)> = Vec::new();
    let mut config = base.clone();
    for pair in pairs {
        kept.push(pair.clone());
        match apply_overrides(base, &kept) {
            Ok(c) => config = c,
            Err(e) => {
                warn!(key = %pair.0, error = %e, "run-time config override not applied");
                kept.pop();
            }
        }
    }
    config
}

/// Keys added, removed, or at another version or value between two override lists.
fn changed_keys<'a>(old: &'a [Seen], new: &'a [Seen]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = new
        .iter()
        .filter(|n| !old.contains(n))
        .chain(old.iter().filter(|o| !new.iter().any(|n| n.key == o.key)))
        .map(|r| r.key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Applies the stored overrides now, then again whenever the replica applies something
/// that changed them, until shutdown.
pub async fn watch(ctx: Arc<Ctx>) {
    let mut applied = crate::settings::watch(&ctx);
    refresh(&ctx);
    loop {
        tokio::select! {
            () = ctx.admission.shutdown.cancelled() => return,
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
                refresh(&ctx);
            }
        }
    }
}
