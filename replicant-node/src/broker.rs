//! Starting and stopping a broker: binds the listeners, builds the shared [`Ctx`], spawns
//! the accept loops, the HTTP endpoint and the housekeeping tasks, and hands back a
//! [`BrokerHandle`] with the bound addresses.
//!
//! The cluster tables are reached through [`CoreHandle`]: remote cores (`cluster.cores`), or
//! in standalone mode an embedded single-voter core in this process, behind the same link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use meshmq_shared::config::{Config, setting};
use meshmq_shared::wire_version::WireVersion;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::authz::{AllowAll, Authorizer};
use crate::core_handle::CoreHandle;
use crate::ctx::{Admission, ClusterState, Ctx, LocalState, TableState};
use crate::peer::{PeerConfig, Peers};
use crate::router::Router;
use crate::sessions::Sessions;
use crate::{connection, http, sys};

/// Builds a broker: configuration plus optional hooks.
pub struct BrokerBuilder {
    config: Config,
    authz: Arc<dyn Authorizer>,
    /// Generate an API key at first start when there is none (the standalone binary).
    generate_api_key: bool,
    /// The inter-node protocol version this node speaks (its build's but in tests).
    wire: WireVersion,
}

/// Entry point: `Broker::builder(config).start().await`.
pub struct Broker;

impl Broker {
    /// A builder with the default hooks (allow everything).
    pub fn builder(config: Config) -> BrokerBuilder {
        BrokerBuilder {
            config,
            authz: Arc::new(AllowAll),
            generate_api_key: false,
            wire: WireVersion::CURRENT,
        }
    }
}

/// Starts a broker with default hooks.
pub async fn start(config: Config) -> anyhow::Result<BrokerHandle> {
    Broker::builder(config).start().await
}

impl BrokerBuilder {
    /// Uses `authz` to authorize PUBLISH and SUBSCRIBE.
    pub fn authorizer(mut self, authz: Arc<dyn Authorizer>) -> BrokerBuilder {
        self.authz = authz;
        self
    }

    /// With `on`, a standalone node (embedded core) whose HTTP listener is enabled and that
    /// has no key of any kind generates one at first start, writes it to
    /// `<node.data_dir>/default_api_key.conf` and logs that path (`crate::api_keys::bootstrap`).
    /// The `replicant-node` binary turns it on; embedders and tests choose.
    pub fn generate_api_key(mut self, on: bool) -> BrokerBuilder {
        self.generate_api_key = on;
        self
    }

    /// Speaks inter-node protocol `wire` instead of this build's version: for tests of
    /// mixed versions only (no configuration key sets it).
    #[doc(hidden)]
    pub fn wire_version(mut self, wire: WireVersion) -> BrokerBuilder {
        self.wire = wire;
        self
    }

    /// Binds every listener and starts serving.
    pub async fn start(self) -> anyhow::Result<BrokerHandle> {
        let config = self.config;
        // The secure default holds for embedders too, not only for configurations loaded
        // from a file (docs/configuration.md, "Authentication").
        if let Some(open) = meshmq_shared::config::open_listener(&config) {
            anyhow::bail!(
                "no authenticator is configured and the MQTT listener {open} is not on \
                 loopback: add an authenticator, or set listeners.allow_anonymous"
            );
        }
        meshmq_shared::config::check_static_api_key(&config)?;
        if let Some(http) = config.listeners.http_bind
            && !http.ip().is_loopback()
            && config.listeners.api_key.is_none()
            && config.api_key.bootstrap_file.is_none()
        {
            anyhow::bail!(
                "the HTTP API {http} is not on loopback and has no key: set listeners.api_key \
                 or api_key.bootstrap_file"
            );
        }
        // A bad key file stops the start before anything is bound.
        let boot_keys = match &config.api_key.bootstrap_file {
            Some(path) => Some((path.clone(), crate::api_keys::bootstrap::read(path)?)),
            None => None,
        };
        // Rules (and a file source's acl_file) are checked before anything is bound.
        meshmq_shared::config::authz::validate(&config.authorization)
            .map_err(|(key, reason)| anyhow::anyhow!("{key}: {reason}"))?;
        let authz = crate::authz::Authz::new(&config.authorization, self.authz)?;
        // Install the process-wide metrics recorder before anything records.
        let _ = http::prometheus_handle();
        let incarnation = crate::cluster::now_ms();
        let core = CoreHandle::start(&config, incarnation, self.wire).await?;
        let shutdown = CancellationToken::new();
        // The peer endpoint starts before the context exists; its deliveries find the
        // context through this slot (and are dropped until it is set).
        let ctx_slot = Arc::new(std::sync::OnceLock::new());
        let peers = if config.cluster.cores.is_empty() {
            None
        } else {
            let cfg = PeerConfig {
                bind: config.cluster.peer_bind,
                identity: core.identity().clone(),
                node: config.node.name.clone(),
                incarnation,
                queue_len: config.cluster.peer_queue_len,
                queue_bytes: config.cluster.peer_queue_bytes,
                applied: core.replica().subscribe_applied(),
                on_session: Some(crate::handover::on_session_fn(ctx_slot.clone())),
                wire: self.wire,
            };
            Some(
                Peers::start(
                    cfg,
                    crate::forward::deliver_fn(ctx_slot.clone()),
                    shutdown.clone(),
                )
                .with_context(|| {
                    format!(
                        "cannot bind the peer endpoint {} ({})",
                        config.cluster.peer_bind,
                        setting("cluster.peer_bind")
                    )
                })?,
            )
        };
        // Every listener is loaded and bound before anything serves: a bad certificate or
        // a taken port stops the start with the listener's setting named.
        let (listeners, bound) = crate::listeners::bind::bind_all(&config)?;
        let listeners = Arc::new(listeners);
        let bind_failed = |what: &str, addr: SocketAddr, key: &str| {
            format!("cannot bind the {what} {addr} ({})", setting(key))
        };
        let http_listener = match config.listeners.http_bind {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| bind_failed("HTTP listener", a, "listeners.http_bind"))?,
            ),
            None => None,
        };
        let authn = crate::authn::Chain::new(&config)?;
        let alarms = crate::alarms::Alarms::new(
            config.alarms.history_size,
            crate::alarms::webhook::Webhook::start(&config.alarms, &shutdown)?,
        );
        let ctx = Arc::new(Ctx {
            tables: TableState {
                core,
                node: Arc::from(config.node.name.as_str()),
                incarnation,
                route_writer: crate::route_writer::RouteWriter::new(Duration::from_millis(
                    config.cluster.transact_timeout_ms,
                )),
                unknown_claims: crate::unknown_claims::UnknownClaims::default(),
            },
            cluster: ClusterState {
                peers,
                handovers: crate::handover::Handovers::default(),
                shared_picker: crate::shared_pick::SharedPicker::default(),
                fanout: crate::fanout::Fanout::default(),
            },
            local: LocalState {
                router: Router::new(config.mqtt.shared_subscription_strategy),
                sessions: Sessions::default(),
                queue_budget: crate::node_budget::NodeBudget::new(
                    usize::try_from(config.mqtt.max_node_mqueue_bytes).unwrap_or(usize::MAX),
                ),
                next_id: AtomicU64::new(1),
            },
            admission: Admission {
                listeners: listeners.clone(),
                conn_limit: Arc::new(Semaphore::new(
                    config.listeners.max_connections.min(Semaphore::MAX_PERMITS),
                )),
                connections: AtomicUsize::new(0),
                evacuation: crate::evacuation::Evacuation::default(),
                shutdown,
                started: Instant::now(),
            },
            authz,
            authn,
            banned: crate::banned::BanState::default(),
            api_keys: crate::api_keys::ApiKeys::default(),
            runtime: crate::configs::Runtime::new(config.clone()),
            alarms,
            trace: crate::trace::Traces::new(
                &config.node.name,
                config.node.data_dir.join("trace"),
                config.trace.clone(),
            ),
            stats_max: crate::sys::stats::Maxima::default(),
            config,
        });
        let _ = ctx_slot.set(Arc::downgrade(&ctx));
        // The replica is ready: the cluster's run-time overrides apply before any client.
        crate::configs::refresh(&ctx);
        crate::cluster::announce_node(&ctx).await;
        // Whether this node has a key source is a cluster fact (`api_keys::mode`).
        crate::api_keys::mode::record(&ctx).await.map_err(|e| {
            anyhow::anyhow!("cannot record whether this node has an API key source: {e}")
        })?;
        if let Some((path, keys)) = &boot_keys {
            crate::api_keys::bootstrap::apply(&ctx, path, keys).await?;
        }
        if self.generate_api_key
            && ctx.config.listeners.http_bind.is_some()
            && ctx.tables.core.embedded().is_some()
        {
            crate::api_keys::bootstrap::default_key(&ctx).await?;
        }
        // A node restarted mid-evacuation refuses from its first CONNECT.
        crate::evacuation::sync(&ctx);
        let mqtt_addr = listeners
            .addr("tcp:default")
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let ws_addr = listeners.addr("ws:default");
        let http_addr = http_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let mut tasks = JoinSet::new();
        for (listener, socket) in bound {
            tasks.spawn(crate::listeners::accept::run(ctx.clone(), listener, socket));
        }
        crate::listeners::reload::spawn(&listeners, &ctx.admission.shutdown, &mut tasks);
        // The API router serves the HTTP listener and calls from peers (the fan-out), so it
        // exists even without a listener.
        let api = crate::http::routes::api(&ctx);
        ctx.cluster.fanout.set_router(api.clone());
        if let Some(peers) = &ctx.cluster.peers {
            peers.set_api_handler(crate::fanout::peer_handler(Arc::downgrade(&ctx)));
        }
        if let Some(l) = http_listener {
            let mut state = http::HttpState::new(ctx.config.node.name.clone(), ctx.clone())
                .with_core_link(Arc::new(ctx.tables.core.link().clone()))
                .with_gauges(ctx.clone());
            if ctx.config.listeners.metrics_require_key {
                let weak = Arc::downgrade(&ctx);
                state = state.with_metrics_guard(Arc::new(move |headers| match weak.upgrade() {
                    Some(ctx) => crate::http::api::authorize(&ctx, headers),
                    None => Err(crate::http::api::unavailable("the node is stopping")),
                }));
            }
            let token = ctx.admission.shutdown.clone();
            tasks.spawn(async move {
                if let Err(e) = http::serve(l, state, api, token).await {
                    warn!(error = %e, "HTTP listener stopped");
                }
            });
        }
        tasks.spawn(sys::run(ctx.clone()));
        tasks.spawn(crate::forward::sync_links(ctx.clone()));
        tasks.spawn(crate::route_writer::run(ctx.clone()));
        tasks.spawn(crate::unknown_claims::run(ctx.clone()));
        tasks.spawn(connection::moved::watch_remote_claims(ctx.clone()));
        tasks.spawn(crate::evacuation::watch(ctx.clone()));
        tasks.spawn(crate::banned::live::watch(ctx.clone()));
        tasks.spawn(crate::configs::watch(ctx.clone()));
        tasks.spawn(crate::alarms::checks::run(ctx.clone()));
        tasks.spawn(crate::trace::sync::run(ctx.clone()));
        for l in listeners.all().iter().filter(|l| l.running()) {
            info!(listener = %l.id, addr = ?l.addr, "listening");
        }
        info!(%mqtt_addr, ?ws_addr, ?http_addr, node = %ctx.node(), "meshmq broker started");
        Ok(BrokerHandle {
            ctx,
            mqtt_addr,
            ws_addr,
            http_addr,
            tasks,
        })
    }
}

/// A running broker.
pub struct BrokerHandle {
    ctx: Arc<Ctx>,
    mqtt_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    tasks: JoinSet<()>,
}

impl BrokerHandle {
    /// Bound address of `tcp:default` (`0.0.0.0:0` when it is disabled).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// Bound address of the listener `type:name` (`ssl:default`), if it is running.
    pub fn listener_addr(&self, id: &str) -> Option<SocketAddr> {
        self.ctx.admission.listeners.addr(id)
    }

    /// Connections on the listener `type:name` now (handshakes included).
    pub fn listener_connections(&self, id: &str) -> Option<usize> {
        self.ctx
            .admission
            .listeners
            .get(id)
            .map(|l| l.current_connections())
    }

    /// Bound address of `ws:default`, if enabled.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Bound HTTP address, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Live MQTT connections.
    pub fn connections(&self) -> usize {
        self.ctx.admission.connections.load(Ordering::Relaxed)
    }

    /// Sessions held (connected or not).
    pub fn sessions(&self) -> usize {
        self.ctx.local.sessions.len()
    }

    /// Subscriptions in this node's router (plain ones plus shared memberships).
    pub fn subscriptions(&self) -> usize {
        self.ctx.local.router.subscription_count()
    }

    /// Bytes this node's sessions hold for their clients: queued messages and writes in
    /// progress, as `mqtt.max_node_mqueue_bytes` counts them.
    pub fn queued_bytes(&self) -> usize {
        self.ctx.local.queue_budget.held()
    }

    /// Links to the other replicants (cluster mode only).
    pub fn peers(&self) -> Option<&Peers> {
        self.ctx.cluster.peers.as_ref()
    }

    /// This node's way to the cluster tables (replica, core link, embedded core).
    pub fn core(&self) -> &CoreHandle {
        &self.ctx.tables.core
    }

    /// The context the node's tasks share (for embedders and tests that call node-level
    /// helpers such as [`crate::settings`]).
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Stops accepting, tells every client the server is shutting down, and waits (bounded)
    /// for the connection tasks to finish.
    pub async fn shutdown(mut self) {
        crate::evacuation::finish_before_shutdown(&self.ctx).await;
        self.ctx.admission.shutdown.cancel();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ctx.admission.connections.load(Ordering::Relaxed) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        // Breaks the Ctx → router → Ctx cycle, so the node's state is dropped with it.
        self.ctx.cluster.fanout.clear_router();
        self.ctx.tables.core.shutdown().await;
    }

    /// Waits until the broker is stopped by a signal (Ctrl-C / SIGTERM), then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        info!("signal received, shutting down");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
