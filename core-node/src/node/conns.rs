//! Outgoing QUIC connections from this core to other cores (forwarding a Transact or a lease
//! to the leader), one cached connection per address, re-dialed when it has closed.
//!
//! Owns nothing but the cache; it never retries a request (callers decide what is safe).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshmq_shared::quic::endpoint;
use meshmq_shared::quic::frame::{self, RequestError};
use parking_lot::Mutex;

/// A cache of connections dialed from one endpoint.
#[derive(Clone)]
pub struct Conns {
    endpoint: quinn::Endpoint,
    cache: Arc<Mutex<HashMap<String, quinn::Connection>>>,
    timeout: Duration,
}

impl Conns {
    /// Dials from `endpoint` (which carries the client TLS config); a dial gives up after
    /// `timeout` (keep it short: a dead peer must not eat the caller's deadline).
    pub fn new(endpoint: quinn::Endpoint, timeout: Duration) -> Self {
        Self {
            endpoint,
            cache: Arc::default(),
            timeout,
        }
    }

    /// A live connection to `addr` (`host:port`), dialing if needed.
    pub async fn get(&self, addr: &str) -> Result<quinn::Connection, String> {
        if let Some(c) = self.cache.lock().get(addr)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let sock = resolve(addr).await?;
        let conn = endpoint::connect(&self.endpoint, sock, self.timeout)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        self.cache.lock().insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    /// One request/response on a stream of a cached connection to `addr`, within
    /// `timeout`; the error tells a request that never reached `addr` from one that may have.
    pub async fn request<Req, Resp>(
        &self,
        addr: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Delivery>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let conn = self.get(addr).await.map_err(Delivery::NotSent)?;
        self.request_on(&conn, addr, req, timeout).await
    }

    /// As [`request`](Self::request), on a connection to `addr` obtained with
    /// [`get`](Self::get).
    pub async fn request_on<Req, Resp>(
        &self,
        conn: &quinn::Connection,
        addr: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Delivery>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        frame::request_once(conn, req, frame::MAX_FRAME, timeout)
            .await
            .map_err(|e| match e {
                RequestError::NotSent(e) => Delivery::NotSent(format!("request to {addr}: {e}")),
                RequestError::MaybeSent(e) => {
                    Delivery::MaybeSent(format!("request to {addr}: {e}"))
                }
            })
    }
}

/// Why a request to another core got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Delivery {
    /// It never reached the other core (dial failed, or it shut down before serving it).
    #[error("{0}")]
    NotSent(String),
    /// It may have been processed; the outcome is unknown.
    #[error("{0}")]
    MaybeSent(String),
}

/// Resolves `host:port` to its first address.
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {addr}: no address"))
}
