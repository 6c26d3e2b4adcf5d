//! Whether the cluster's API needs a key, decided for the whole cluster rather than per
//! node: every node requires a key as soon as ANY node of the cluster is configured with a
//! key source (`listeners.api_key` or `api_key.bootstrap_file`) or the cluster holds an API
//! key. A node with a key source records it at start as a row of the `settings` table
//! (namespace [`NS_MODE`], key `configured:<node>`) and removes its row when it starts
//! without one; the other nodes read the rows from their replica. So a node left without a
//! key (loopback only) can never be the open door to a cluster whose other nodes want a key:
//! it refuses too, and so cannot mint keys the others would accept.
//!
//! The namespace also records that the standalone binary generated its default key once
//! ([`DEFAULT_GENERATED`], see `super::bootstrap::default_key`), so that a key deleted by an
//! operator is never generated again.
//!
//! Owns the rows of [`NS_MODE`]. It never holds a secret: a row says only that a node has a
//! key source, not which.

use std::time::Duration;

use crate::ctx::Ctx;
use crate::settings::{self, SettingsError};

/// Namespace of the key-mode rows in the `settings` table.
pub const NS_MODE: &str = "api_key.mode";
/// Prefix of a node's row: `configured:<node>`.
const CONFIGURED: &str = "configured:";
/// Row written once the standalone binary generated its default key.
pub const DEFAULT_GENERATED: &str = "default_key_generated";

/// Whether this node's configuration has a key source.
pub fn configured_here(ctx: &Ctx) -> bool {
    ctx.config.listeners.api_key.is_some() || ctx.config.api_key.bootstrap_file.is_some()
}

/// Whether some node of the cluster recorded a key source (this one included).
pub fn configured_anywhere(ctx: &Ctx) -> bool {
    ctx.tables.core.read(|t| {
        t.settings_in(NS_MODE)
            .any(|r| r.key.starts_with(CONFIGURED))
    })
}

/// How long [`record`] keeps trying while the cores cannot commit (no leader yet).
const RECORD_WITHIN: Duration = Duration::from_secs(15);

/// Records (or removes) this node's row so that it says whether this node has a key
/// source now. Called at start, once the node follows the cores, before the HTTP listener
/// serves; retried for [`RECORD_WITHIN`] while the cores cannot commit.
pub async fn record(ctx: &Ctx) -> Result<(), SettingsError> {
    let deadline = tokio::time::Instant::now() + RECORD_WITHIN;
    loop {
        match record_once(ctx).await {
            Err(SettingsError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            done => return done,
        }
    }
}

/// One attempt of [`record`].
async fn record_once(ctx: &Ctx) -> Result<(), SettingsError> {
    let key = format!("{CONFIGURED}{}", ctx.node());
    let present = settings::get(ctx, NS_MODE, &key).is_some();
    match (configured_here(ctx), present) {
        (true, false) => settings::put(ctx, NS_MODE, &key, b"1".to_vec(), None)
            .await
            .map(|_| ()),
        (false, true) => settings::delete(ctx, NS_MODE, &key, None).await.map(|_| ()),
        _ => Ok(()),
    }
}
