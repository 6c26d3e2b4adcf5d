//! [`WsIo`]: an upgraded WebSocket seen as a byte stream.
//!
//! Owns the mapping between WebSocket messages and the MQTT byte stream: binary frames are
//! concatenated on the read side (a frame may carry part of a packet or several packets),
//! each `poll_write` becomes one binary frame, `poll_flush` flushes, `poll_shutdown` sends a
//! Close frame. A text frame is answered with Close 1003 and a read error. Ping/Pong are
//! handled by the WebSocket library. It must never parse MQTT.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the read side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Reading binary frames.
    Open,
    /// A text frame arrived; Close 1003 must still be queued.
    Reject,
    /// Close 1003 queued; flushing it before reporting the error.
    RejectFlush,
    /// Closed by the peer, by an error or after a rejection: reads return EOF.
    Eof,
}

/// One MQTT-over-WebSocket connection as `AsyncRead + AsyncWrite`.
pub struct WsIo {
    /// The upgraded connection.
    ws: WebSocket,
    /// Unread rest of the last binary frame.
    pending: Bytes,
    /// Read-side state.
    read: ReadState,
}

impl std::fmt::Debug for WsIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("pending", &self.pending.len())
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl WsIo {
    /// Wraps an upgraded WebSocket.
    pub fn new(ws: WebSocket) -> Self {
        WsIo {
            ws,
            pending: Bytes::new(),
            read: ReadState::Open,
        }
    }

    /// The negotiated subprotocol (`mqtt` or `mqttv3.1`), if the client offered one.
    pub fn protocol(&self) -> Option<&str> {
        self.ws.protocol().and_then(|p| p.to_str().ok())
    }

    /// Queues and flushes Close 1003 after a text frame. Send errors are ignored: the
    /// connection is being dropped either way.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read == ReadState::Reject {
            match ready!(Pin::new(&mut self.ws).poll_ready(cx)) {
                Ok(()) => {
                    let frame = CloseFrame {
                        code: close_code::UNSUPPORTED,
                        reason: "MQTT over WebSocket uses binary frames".into(),
                    };
                    let _ = Pin::new(&mut self.ws).start_send(Message::Close(Some(frame)));
                }
                Err(_) => return Poll::Ready(()),
            }
            self.read = ReadState::RejectFlush;
        }
        let _ = ready!(Pin::new(&mut self.ws).poll_flush(cx));
        Poll::Ready(())
    }
}

fn to_io(e: axum::Error) -> io::Error {
    io::Error::other(e)
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match this.read {
                ReadState::Open => {}
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Reject | ReadState::RejectFlush => {
                    ready!(this.poll_reject(cx));
                    this.read = ReadState::Eof;
                    let msg = "text frame on an MQTT WebSocket";
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, msg)));
                }
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => this.read = ReadState::Reject,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.read = ReadState::Eof,
                Some(Err(e)) => {
                    this.read = ReadState::Eof;
                    return Poll::Ready(Err(to_io(e)));
                }
            }
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        let frame = Message::Binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut this.ws).start_send(frame).map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(to_io)
    }
}
