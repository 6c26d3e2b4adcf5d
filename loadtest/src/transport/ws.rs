//! `--ws`: MQTT over WebSocket with tokio-tungstenite (the crate the workspace already uses
//! in the broker's WebSocket tests): the HTTP upgrade on `path` offering the `mqtt`
//! subprotocol, then [`WsStream`], which turns binary messages into the byte stream the
//! session layer reads and wraps every write into one binary message.
//!
//! It owns the framing only; it never looks inside MQTT packets. Pings are answered by
//! tungstenite while reading; a Close frame or the end of the stream reads as end-of-file.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use anyhow::Context as _;
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::BoxStream;

/// Upgrades `stream` (already TLS-wrapped for `wss`) to a WebSocket on `path`.
pub async fn upgrade(stream: BoxStream, authority: &str, path: &str) -> anyhow::Result<BoxStream> {
    let mut request = format!("ws://{authority}{path}")
        .into_client_request()
        .with_context(|| format!("WebSocket URL for {authority}{path}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .context("WebSocket upgrade")?;
    Ok(Box::new(WsStream {
        ws,
        pending: Bytes::new(),
        eof: false,
    }))
}

/// A WebSocket seen as a byte stream.
pub struct WsStream {
    ws: WebSocketStream<BoxStream>,
    /// The rest of the last binary message read.
    pending: Bytes,
    /// A Close frame or the end of the stream was seen.
    eof: bool,
}

fn io_err(err: WsError) -> io::Error {
    match err {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::other(other),
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(text))) => self.pending = Bytes::from(text.to_string()),
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Ok(_)) => {}
                Some(Err(WsError::ConnectionClosed)) => self.eof = true,
                Some(Err(err)) => return Poll::Ready(Err(io_err(err))),
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        // Push it out now if the socket takes it; a later write or flush finishes the job.
        if let Poll::Ready(Err(err)) = Pin::new(&mut self.ws).poll_flush(cx) {
            return Poll::Ready(Err(io_err(err)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_err)
    }
}
