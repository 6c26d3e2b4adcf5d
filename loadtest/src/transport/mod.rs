//! How a `conn`/`sub`/`pub`/`storm` client reaches its broker: plain TCP, TLS over TCP
//! (`--tls`, rustls with the ring provider), MQTT over WebSocket (`--ws`, also over TLS),
//! all handed to the session layer as one boxed byte stream ([`BoxStream`]).
//!
//! It owns the socket set-up and its deadline; it never speaks MQTT. It must never connect
//! to an address it was not given: resolution and the loopback policy are the caller's
//! ([`crate::endpoint`]).

mod source;
pub mod tls;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::endpoint::Endpoint;
pub use source::LocalAddrs;

/// A bidirectional byte stream: TCP, TLS or WebSocket, boxed.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

/// The stream a session reads and writes.
pub type BoxStream = Box<dyn ByteStream>;

/// The transport settings of every client of a run.
#[derive(Clone, Default)]
pub struct Transport {
    /// TLS client configuration (`--tls`).
    pub tls: Option<tls::TlsClient>,
    /// WebSocket path (`--ws`), e.g. `/mqtt`.
    pub ws_path: Option<String>,
    /// Local addresses to connect from, in turn (`--ifaddr`); `None`: the kernel chooses.
    pub local: Option<Arc<LocalAddrs>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("ws_path", &self.ws_path)
            .field("local", &self.local)
            .finish()
    }
}

impl Transport {
    /// A short name for reports: `tcp`, `tls`, `ws` or `wss`.
    pub fn name(&self) -> &'static str {
        match (self.tls.is_some(), self.ws_path.is_some()) {
            (false, false) => "tcp",
            (true, false) => "tls",
            (false, true) => "ws",
            (true, true) => "wss",
        }
    }

    /// Opens TCP to `addr` (which `endpoint` resolved to), then TLS (resuming `client`'s
    /// session with `--tls-resume`) and the WebSocket upgrade if configured; everything
    /// within `timeout`.
    pub async fn open(
        &self,
        endpoint: &Endpoint,
        addr: SocketAddr,
        timeout: Duration,
        client: &str,
    ) -> anyhow::Result<BoxStream> {
        let fut = async {
            let tcp = source::connect(self.local.as_deref(), addr).await?;
            tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
            let mut stream: BoxStream = Box::new(tcp);
            if let Some(tls) = &self.tls {
                stream = tls.wrap(stream, &endpoint.host, addr, client).await?;
            }
            if let Some(path) = &self.ws_path {
                stream = ws::upgrade(stream, &endpoint.to_string(), path).await?;
            }
            anyhow::Ok(stream)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| crate::failure::Timeout("transport set-up"))?
    }
}
