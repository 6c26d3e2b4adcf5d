//! [`TestBroker`]: what the MQTT suite talks to, in the topology chosen by the environment
//! variable `MESHMQ_TEST_TOPOLOGY`:
//! - unset or `single`: one standalone broker (the default, exactly as before);
//! - `rr-cluster` (also the default of the `mqtt_rr` test binary, which is the same suite):
//!   3 cores + 3 replicants in this process (real QUIC, the code of
//!   [`Cluster`]), the test's config tweak applied to every replicant, behind an in-process
//!   round-robin TCP proxy ([`RoundRobinProxy`]) for MQTT and one for WebSocket, so each new
//!   connection of the same client lands on the next replicant.
//!
//! Owns every node and proxy it starts and stops them when dropped (or with
//! [`TestBroker::shutdown`]); rr-cluster instances hold [`serial`]'s lock for their whole
//! life, so they never run two at once. It must never reach into broker internals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use meshmq_shared::config::Config;
use replicant_node::{Authorizer, Broker, BrokerHandle};
use tokio::sync::MutexGuard;

use super::cluster::{Cluster, fast_timings, serial};
use super::proxy::RoundRobinProxy;
use super::test_config;

/// The environment variable that selects the topology.
pub const TOPOLOGY_VAR: &str = "MESHMQ_TEST_TOPOLOGY";
/// Replicants behind the proxy in rr-cluster mode.
pub const RR_REPLICANTS: usize = 3;
/// Cores of the rr-cluster.
pub const RR_CORES: u64 = 3;

/// True in the `mqtt_rr` test binary (cargo names it `mqtt_rr-<hash>`).
fn running_mqtt_rr() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("mqtt_rr-"))
        })
        .unwrap_or(false)
}

/// Where the suite's broker runs; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One standalone broker.
    Single,
    /// Round-robin TCP proxy over the replicants of a 3-core cluster.
    RrCluster,
}

impl Topology {
    /// The topology `MESHMQ_TEST_TOPOLOGY` names; panics on an unknown value (a typo must
    /// not silently run the default).
    pub fn from_env() -> Topology {
        match std::env::var(TOPOLOGY_VAR).as_deref() {
            // The `mqtt_rr` test binary is the same suite, always behind the proxy.
            Err(_) | Ok("") if running_mqtt_rr() => Topology::RrCluster,
            Err(_) | Ok("") | Ok("single") => Topology::Single,
            Ok("rr-cluster") => Topology::RrCluster,
            Ok(other) => panic!("{TOPOLOGY_VAR}={other}: expected `single` or `rr-cluster`"),
        }
    }
}

/// A broker under test in either topology; see the module doc.
pub struct TestBroker {
    inner: Inner,
}

enum Inner {
    Single(BrokerHandle),
    RrCluster(RrCluster),
}

/// The rr-cluster topology. Fields drop in order: proxies, replicants, cores, the lock.
struct RrCluster {
    mqtt: RoundRobinProxy,
    ws: Option<RoundRobinProxy>,
    replicants: Vec<BrokerHandle>,
    cluster: Cluster,
    _serial: MutexGuard<'static, ()>,
}

impl TestBroker {
    /// Starts a broker in the topology of [`Topology::from_env`], `tweak` applied to
    /// [`test_config`] (to every replicant's in rr-cluster mode), with `authz` if given.
    pub async fn start(
        tweak: impl FnOnce(&mut Config),
        authz: Option<Arc<dyn Authorizer>>,
    ) -> TestBroker {
        let mut config = test_config();
        tweak(&mut config);
        let inner = match Topology::from_env() {
            Topology::Single => {
                let mut builder = Broker::builder(config);
                if let Some(authz) = authz {
                    builder = builder.authorizer(authz);
                }
                Inner::Single(builder.start().await.expect("broker starts"))
            }
            Topology::RrCluster => Inner::RrCluster(RrCluster::start(config, authz).await),
        };
        TestBroker { inner }
    }

    /// Where MQTT/TCP clients connect (the proxy in rr-cluster mode).
    pub fn mqtt_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Single(b) => b.mqtt_addr(),
            Inner::RrCluster(rr) => rr.mqtt.addr(),
        }
    }

    /// Where WebSocket clients connect, if enabled (the proxy in rr-cluster mode).
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Single(b) => b.ws_addr(),
            Inner::RrCluster(rr) => rr.ws.as_ref().map(RoundRobinProxy::addr),
        }
    }

    /// An HTTP listener, if enabled. In rr-cluster mode the first replicant's: `/metrics`
    /// renders the process-wide recorder, so every replicant shows the same counters.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.nodes().first().and_then(BrokerHandle::http_addr)
    }

    /// Live MQTT connections, summed over the replicants.
    pub fn connections(&self) -> usize {
        self.nodes().iter().map(BrokerHandle::connections).sum()
    }

    /// Sessions held (connected or not), summed over the replicants.
    pub fn sessions(&self) -> usize {
        self.nodes().iter().map(BrokerHandle::sessions).sum()
    }

    /// Stored `subscriptions` rows of `client_id`, as the node holding its session has them
    /// (a replicant keeps its own clients' rows only: the others hold none).
    pub fn stored_subscriptions(&self, client_id: &str) -> usize {
        self.nodes()
            .iter()
            .map(|n| n.core().read(|t| t.subscriptions(client_id).count()))
            .max()
            .unwrap_or(0)
    }

    /// The broker, or the replicants behind the proxy.
    pub fn nodes(&self) -> &[BrokerHandle] {
        match &self.inner {
            Inner::Single(b) => std::slice::from_ref(b),
            Inner::RrCluster(rr) => &rr.replicants,
        }
    }

    /// The topology this broker runs in.
    pub fn topology(&self) -> Topology {
        match &self.inner {
            Inner::Single(_) => Topology::Single,
            Inner::RrCluster(_) => Topology::RrCluster,
        }
    }

    /// Stops everything in order (proxies, replicants, cores), waiting for each.
    pub async fn shutdown(self) {
        match self.inner {
            Inner::Single(b) => b.shutdown().await,
            Inner::RrCluster(rr) => rr.shutdown().await,
        }
    }
}

impl RrCluster {
    /// Waits for [`serial`]'s lock, starts the cores, one replicant per name `r1..` from
    /// `config` (the tweaked test config; each gets its own name, data dir and cluster
    /// fields), and the proxies.
    async fn start(config: Config, authz: Option<Arc<dyn Authorizer>>) -> RrCluster {
        let serial = serial().await;
        let cluster = Cluster::start(RR_CORES, fast_timings()).await;
        let mut replicants = Vec::with_capacity(RR_REPLICANTS);
        for i in 1..=RR_REPLICANTS {
            let own = cluster.replicant_config(&format!("r{i}"), cluster.core_addrs());
            let mut c = config.clone();
            c.node.name = own.node.name;
            c.node.data_dir = own.node.data_dir;
            c.cluster.cores = own.cluster.cores;
            c.cluster.certs_dir = own.cluster.certs_dir;
            replicants.push(cluster.start_replicant_config(c, authz.clone()).await);
        }
        // One counter for both listeners: the k-th connection of the test, whatever its
        // transport, goes to replicant k mod 3.
        let next = Arc::new(AtomicUsize::new(0));
        let mqtt_backends = replicants.iter().map(BrokerHandle::mqtt_addr).collect();
        let mqtt = RoundRobinProxy::start(mqtt_backends, next.clone())
            .await
            .expect("MQTT proxy binds");
        let ws_backends: Option<Vec<SocketAddr>> =
            replicants.iter().map(BrokerHandle::ws_addr).collect();
        let ws = match ws_backends {
            Some(addrs) => Some(
                RoundRobinProxy::start(addrs, next)
                    .await
                    .expect("WebSocket proxy binds"),
            ),
            None => None,
        };
        RrCluster {
            mqtt,
            ws,
            replicants,
            cluster,
            _serial: serial,
        }
    }

    async fn shutdown(self) {
        let RrCluster {
            mqtt,
            ws,
            replicants,
            cluster,
            _serial,
        } = self;
        drop((mqtt, ws));
        for r in replicants {
            r.shutdown().await;
        }
        cluster.stop().await;
    }
}

/// A node whose `/metrics` can be read: a bare broker (other test binaries) or a
/// [`TestBroker`].
pub trait HttpNode {
    /// The node's HTTP listener, if enabled.
    fn http_addr(&self) -> Option<SocketAddr>;
}

impl HttpNode for BrokerHandle {
    fn http_addr(&self) -> Option<SocketAddr> {
        BrokerHandle::http_addr(self)
    }
}

impl HttpNode for TestBroker {
    fn http_addr(&self) -> Option<SocketAddr> {
        TestBroker::http_addr(self)
    }
}
