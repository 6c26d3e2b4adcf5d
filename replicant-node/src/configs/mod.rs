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
//! the rebuild. It never writes the table itself (the API does) and never logs a value.

pub mod api;

use std::sync::Arc;

use meshmq_shared::config::Config;
use meshmq_shared::config::runtime::apply_overrides;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tracing::{info, warn};

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
    /// The overrides in force: (dotted key, row version), in key order.
    overrides: Vec<(String, u64)>,
}

impl Live {
    fn new(config: Config, overrides: Vec<(String, u64)>) -> Live {
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
}

impl Runtime {
    /// The base configuration in force (no override yet; see [`refresh`]).
    pub fn new(base: Config) -> Runtime {
        Runtime {
            current: RwLock::new(Arc::new(Live::new(base.clone(), Vec::new()))),
            refreshing: Mutex::new(()),
            base,
        }
    }

    /// The effective configuration now.
    pub fn current(&self) -> Arc<Live> {
        self.current.read().clone()
    }

    /// The configuration from file, environment and flags, without overrides.
    pub fn base(&self) -> &Config {
        &self.base
    }
}

/// The overrides in the local replica: (key, JSON value, version); a row whose value is not
/// JSON is skipped with a warning.
pub fn stored(ctx: &Ctx) -> Vec<(String, Value, u64)> {
    crate::settings::list(ctx, NS)
        .into_iter()
        .filter_map(
            |(key, value, version)| match serde_json::from_slice(&value) {
                Ok(v) => Some((key, v, version)),
                Err(_) => {
                    warn!(key = %key, "run-time config row is not JSON; ignored");
                    None
                }
            },
        )
        .collect()
}

/// Rebuilds the effective configuration when the stored overrides changed since the last
/// rebuild; true if it did. An override this node cannot apply (a key it does not know as
/// run-time, a value its base refuses together with it) is skipped with a warning; the
/// others apply.
pub fn refresh(ctx: &Ctx) -> bool {
    // Key and version only (no value copied, nothing parsed) on the common path: the
    // replica moves on every applied entry.
    // One rebuild at a time (the API and the watch both call this): a slower one never
    // swaps in an older state after a newer one.
    let _serial = ctx.runtime.refreshing.lock();
    let current = ctx.runtime.current();
    let unchanged = ctx.tables.core.read(|t| {
        let mut rows = t.settings_in(NS);
        current
            .overrides
            .iter()
            .all(|(k, v)| rows.next().is_some_and(|r| &r.key == k && r.version == *v))
            && rows.next().is_none()
    });
    if unchanged {
        return false;
    }
    let seen: Vec<(String, u64)> = ctx.tables.core.read(|t| {
        t.settings_in(NS)
            .map(|r| (r.key.clone(), r.version))
            .collect()
    });
    let rows = stored(ctx);
    let runtime = &ctx.runtime;
    let pairs: Vec<(String, Value)> = rows.into_iter().map(|(k, v, _)| (k, v)).collect();
    let config = match apply_overrides(&runtime.base, &pairs) {
        Ok(c) => c,
        Err(_) => one_by_one(&runtime.base, &pairs),
    };
    let changed: Vec<&str> = changed_keys(&current.overrides, &seen);
    info!(keys = ?changed, node = %ctx.node(), "run-time configuration applied");
    *runtime.current.write() = Arc::new(Live::new(config, seen));
    true
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

/// Keys added, removed or at another version between two override lists.
fn changed_keys<'a>(old: &'a [(String, u64)], new: &'a [(String, u64)]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = new
        .iter()
        .filter(|n| !old.contains(n))
        .chain(old.iter().filter(|o| !new.iter().any(|n| n.0 == o.0)))
        .map(|(k, _)| k.as_str())
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
