//! The bench's link to the core group: one QUIC connection (mutual TLS, the `bench`
//! certificate of the dev CA) to the leader, `Transact` requests on it, and a switch to the
//! leader a core names when it answers `NotLeader`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use core_node::api::{self, Committed, TransactError};
use meshmq_proto::core::{Request, Response, TransactRequest, request, response};
use meshmq_proto::tables::{Batch, Op};
use meshmq_shared::quic::{self, CertPaths, Identity, frame};
use parking_lot::Mutex;

/// How long one Transact may take before the bench reports it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection handshake may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of one Transact that was certainly not committed (NotLeader, Unavailable).
const ATTEMPTS: usize = 20;

/// A connection to the core that leads (as far as the bench knows).
pub struct Link {
    endpoint: quinn::Endpoint,
    conn: Mutex<(SocketAddr, quinn::Connection)>,
}

impl Link {
    /// Dials `core` with the identity `node` found in `certs`.
    pub async fn connect(certs: &Path, node: &str, core: SocketAddr) -> Result<Arc<Self>> {
        let id = Identity::load(&CertPaths::in_dir(certs, node))
            .with_context(|| format!("loading the {node} certificate from {}", certs.display()))?;
        let endpoint = quic::endpoint::client(&id, quic::ALPN_CORE, core)?;
        let conn = quic::endpoint::connect(&endpoint, core, DIAL_TIMEOUT).await?;
        Ok(Arc::new(Self {
            endpoint,
            conn: Mutex::new((core, conn)),
        }))
    }

    /// Commits `ops` as one entry; follows `NotLeader` and retries `Unavailable` (both
    /// certainly uncommitted). Any other failure is returned.
    pub async fn transact(&self, ops: Vec<Op>) -> Result<Committed> {
        api::check_entry(&ops).map_err(|e| anyhow!("{e}"))?;
        let req = Request {
            kind: Some(request::Kind::Transact(TransactRequest {
                batch: Some(Batch { ops }),
                forwarded: false,
            })),
            wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
        };
        for _ in 0..ATTEMPTS {
            let conn = self.open_conn().await?;
            let resp: Response =
                frame::request(&conn, &req, frame::MAX_FRAME, REQUEST_TIMEOUT).await?;
            let t = match resp.kind {
                Some(response::Kind::Transact(t)) => t,
                other => bail!("unexpected answer to Transact: {other:?}"),
            };
            match api::from_wire(t) {
                Ok(c) => return Ok(c),
                Err(TransactError::NotLeader {
                    leader: Some(leader),
                }) => self.redial(&leader).await?,
                Err(TransactError::Unavailable(_) | TransactError::NotLeader { leader: None }) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => bail!("transact: {e}"),
            }
        }
        bail!("no leader accepted the transaction after {ATTEMPTS} attempts")
    }

    /// The current connection, dialed again first if it was closed (e.g. idle timeout while
    /// a core was stalled). A request that failed on the old one is not resent.
    async fn open_conn(&self) -> Result<quinn::Connection> {
        let (addr, conn) = self.conn.lock().clone();
        if conn.close_reason().is_none() {
            return Ok(conn);
        }
        let conn = quic::endpoint::connect(&self.endpoint, addr, DIAL_TIMEOUT).await?;
        *self.conn.lock() = (addr, conn.clone());
        Ok(conn)
    }

    /// Connects to `leader` (host:port) unless the link is already there.
    async fn redial(&self, leader: &str) -> Result<()> {
        let addr: SocketAddr = leader.parse().context("leader address")?;
        if self.conn.lock().0 == addr {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        let conn = quic::endpoint::connect(&self.endpoint, addr, DIAL_TIMEOUT).await?;
        *self.conn.lock() = (addr, conn);
        Ok(())
    }
}
