//! The WebSocket listener's handshake deadline.
//!
//! Owns [`HandshakeListener`], an [`axum::serve::Listener`] whose streams ([`DeadlineIo`])
//! fail reads with `TimedOut` once the handshake deadline passes unless the connection was
//! upgraded to a WebSocket first, so a client that connects and never completes the HTTP
//! upgrade (or idles on plain HTTP) is dropped. Also owns [`Peer`], the per-connection info
//! handed to the upgrade handler so it can disarm the deadline. It must never look at the
//! bytes it passes through.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// A TCP listener whose connections must finish the WebSocket upgrade within a deadline.
pub(super) struct HandshakeListener {
    /// The bound socket.
    inner: TcpListener,
    /// Time from accept to a completed upgrade.
    timeout: Duration,
}

impl HandshakeListener {
    pub(super) fn new(inner: TcpListener, timeout: Duration) -> Self {
        HandshakeListener { inner, timeout }
    }
}

impl Listener for HandshakeListener {
    type Io = DeadlineIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's TcpListener impl retries transient errors and backs off on EMFILE.
        let (stream, peer) = Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        let io = DeadlineIo {
            io: stream,
            deadline: Some(Box::pin(tokio::time::sleep(self.timeout))),
            upgraded: Arc::new(AtomicBool::new(false)),
        };
        (io, peer)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream with a handshake deadline on its read side.
pub(super) struct DeadlineIo {
    /// The connection.
    io: TcpStream,
    /// Pending until the deadline; `None` once the connection was upgraded.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Set by the upgrade handler ([`Peer::upgraded`]); disarms the deadline.
    upgraded: Arc<AtomicBool>,
}

impl DeadlineIo {
    /// `Err(TimedOut)` once the deadline passed without an upgrade; registers the waker
    /// with the deadline timer otherwise.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = self.deadline.as_mut() else {
            return Ok(());
        };
        if self.upgraded.load(Ordering::Acquire) {
            self.deadline = None;
            return Ok(());
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "WebSocket handshake timed out",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_deadline(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Per-connection info for the upgrade handler (`ConnectInfo<Peer>`).
#[derive(Clone, Debug)]
pub(super) struct Peer {
    /// The client's address.
    pub(super) addr: SocketAddr,
    /// Shared with the connection's [`DeadlineIo`].
    upgraded: Arc<AtomicBool>,
}

impl Peer {
    /// Disarms the handshake deadline: the connection is a WebSocket now.
    pub(super) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, HandshakeListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HandshakeListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            upgraded: stream.io().upgraded.clone(),
        }
    }
}
