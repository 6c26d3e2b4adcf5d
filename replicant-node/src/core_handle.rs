//! This node's way to the cluster tables: the local read replica plus the link that follows
//! the core group's log and sends it transactions. In standalone mode (no `cluster.cores`)
//! it first starts an embedded single-voter core in this process, on loopback, and then
//! links to it exactly as to a remote core: one code path for both.
//!
//! Owns start-up and shutdown of that pair; the replica logic is in [`crate::replica`], the
//! link in [`crate::core_link`], the core in `core_node::node`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use core_node::api::{Committed, TransactError};
use core_node::node::{CoreConfig, CoreError, CoreNode, RaftTimings, batcher::GroupCommit};
use meshmq_proto::tables::Op;
use meshmq_shared::config::{Config, RegistryReplica, setting};
use meshmq_shared::quic::{certs, tls::Identity};
use meshmq_shared::tables::Tables;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::core_link::{CoreLink, CoreLinkConfig};
use crate::replica::Replica;

/// The replica, the link, and (standalone) the embedded core.
pub struct CoreHandle {
    replica: Replica,
    link: CoreLink,
    /// The embedded core of a standalone node; `None` when cores are remote.
    embedded: Option<Arc<CoreNode>>,
    /// Stops the link's tasks.
    shutdown: CancellationToken,
    /// This node's certificate (also used by the peer endpoint).
    identity: Identity,
}

/// The certificate name of a node: its name with anything but ASCII letters, digits, `-`
/// and `.` turned into `-` (`meshmq@127.0.0.1` → `meshmq-127.0.0.1`), at most 63 chars.
pub fn cert_name(node: &str) -> String {
    let name: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if name.is_empty() || name == "ca" {
        "node".into()
    } else {
        name
    }
}

fn certs_dir(config: &Config) -> PathBuf {
    config
        .cluster
        .certs_dir
        .clone()
        .unwrap_or_else(|| config.node.data_dir.join("certs"))
}

async fn start_embedded(config: &Config, certs_dir: &Path) -> anyhow::Result<Arc<CoreNode>> {
    let certs = certs::ensure_dev(certs_dir, "core-1").with_context(|| {
        format!(
            "cannot prepare the embedded core's certificates in {} ({})",
            certs_dir.display(),
            setting("cluster.certs_dir")
        )
    })?;
    let cfg = CoreConfig {
        node_id: 1,
        core_bind: config.cluster.embedded_core_bind,
        advertise: None,
        data_dir: config.node.data_dir.join("core"),
        initial_members: Vec::new(),
        certs,
        timings: RaftTimings::default(),
        group_commit: GroupCommit::default(),
        follow: core_node::node::follow::FollowLimits::default(),
    };
    CoreNode::start(cfg).await.map_err(embedded_failed)
}

/// An embedded core start-up failure as one line naming the setting behind it.
fn embedded_failed(e: CoreError) -> anyhow::Error {
    match e {
        CoreError::Store { dir, source } => anyhow::anyhow!(
            "cannot open the embedded core's store in {} ({}): {source}",
            dir.display(),
            setting("node.data_dir")
        ),
        CoreError::Certificates(why) => anyhow::anyhow!(
            "cannot load the embedded core's certificates ({}): {why}",
            setting("cluster.certs_dir")
        ),
        CoreError::Bind { addr, error } => anyhow::anyhow!(
            "cannot bind the embedded core's endpoint {addr} ({}): {error}",
            setting("cluster.embedded_core_bind")
        ),
        other => anyhow::Error::new(other).context("cannot start the embedded core"),
    }
}

impl CoreHandle {
    /// Starts (standalone: the embedded core, then) the link, and returns once the replica
    /// has caught up with the core it follows.
    /// `wire`: the inter-node protocol version this node speaks (its build's but in tests).
    pub async fn start(
        config: &Config,
        incarnation: u64,
        wire: meshmq_shared::wire_version::WireVersion,
    ) -> anyhow::Result<Self> {
        let certs_dir = certs_dir(config);
        let node = &config.node.name;
        let (embedded, cores) = if config.cluster.cores.is_empty() {
            let core = start_embedded(config, &certs_dir).await?;
            let addr = core.addr.clone();
            (Some(core), vec![addr])
        } else {
            (None, config.cluster.cores.clone())
        };
        let certs_failed = || {
            format!(
                "cannot load the certificate of {node} from {} ({})",
                certs_dir.display(),
                setting("cluster.certs_dir")
            )
        };
        let paths = certs::ensure_dev(&certs_dir, &cert_name(node)).with_context(certs_failed)?;
        let identity = Identity::load(&paths).with_context(certs_failed)?;
        let replica = match config.cluster.registry_replica {
            RegistryReplica::Projection => Replica::new_projected(node),
            RegistryReplica::Full => Replica::new(),
        };
        let shutdown = CancellationToken::new();
        let link_cfg = CoreLinkConfig {
            cores,
            identity: identity.clone(),
            node: node.clone(),
            incarnation,
            lease_ttl: Duration::from_millis(config.cluster.lease_ttl_ms.max(1_000)),
            request_timeout: Duration::from_secs(5),
            transact_deadline: Duration::from_millis(config.cluster.transact_timeout_ms.max(100)),
            transact_linger: Duration::from_millis(config.cluster.transact_linger_ms),
            max_snapshot_bytes: config.cluster.follow_max_snapshot_bytes,
            max_frame: meshmq_shared::quic::frame::MAX_FRAME,
            wire,
        };
        let link = CoreLink::start(link_cfg, replica.clone(), shutdown.clone())
            .await
            .with_context(|| match embedded {
                Some(_) => "cannot follow the embedded core".to_owned(),
                None => format!(
                    "cannot follow the core group ({})",
                    setting("cluster.cores")
                ),
            })?;
        info!(
            applied = replica.applied_index(),
            standalone = embedded.is_some(),
            "tables replica ready"
        );
        Ok(Self {
            replica,
            link,
            embedded,
            shutdown,
            identity,
        })
    }

    /// Commits `ops` as one transaction; returns once this node's replica has applied it.
    pub async fn transact(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        self.link.transact(ops).await
    }

    /// Reads the local replica (keep `f` short: the follower waits to apply).
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        self.replica.read(f)
    }

    /// Index of the last entry applied to the local replica.
    pub fn applied_index(&self) -> u64 {
        self.replica.applied_index()
    }

    /// This node's TLS identity (cluster CA, certificate, key).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The local replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The link to the cores (current core, switch and lease counters).
    pub fn link(&self) -> &CoreLink {
        &self.link
    }

    /// The embedded core, in standalone mode.
    pub fn embedded(&self) -> Option<&Arc<CoreNode>> {
        self.embedded.as_ref()
    }

    /// Stops the link and (standalone) the embedded core.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(core) = &self.embedded {
            core.shutdown().await;
        }
    }
}
