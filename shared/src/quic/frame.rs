//! Length-delimited protobuf messages on QUIC streams.
//!
//! A frame is a u32 big-endian length followed by that many bytes of one prost-encoded
//! message. Owns the framing and the one-request-one-response exchange on a bidirectional
//! stream; it never interprets a message, never retries, and never reads a body whose length
//! is over the caller's maximum (so a peer cannot make it allocate more than that).

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use quinn::{ReadExactError, RecvStream, SendStream};

/// Largest frame body meshmq sends (64 MiB); readers usually pass it as their maximum.
pub const MAX_FRAME: usize = 64 << 20;

/// Bytes of the length prefix.
const HEADER: usize = 4;

/// Errors reading, writing or exchanging framed messages.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame's length is over the maximum (on read: the body was not read; on write: the
    /// message is over [`MAX_FRAME`] and nothing was sent).
    #[error("frame of {len} bytes is over the maximum of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// The stream ended inside a length prefix or a body.
    #[error("stream ended in the middle of a frame")]
    Truncated,
    /// The body is not a valid encoding of the expected message.
    #[error("cannot decode frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The message could not be encoded (cannot happen with a growable buffer; kept so that
    /// no code path panics).
    #[error("cannot encode message: {0}")]
    Encode(#[from] prost::EncodeError),
    /// The request did not complete within its timeout.
    #[error("request timed out")]
    Timeout,
    /// The peer finished the stream without sending a response.
    #[error("stream closed without a response")]
    Closed,
    /// A stream could not be opened because the connection is gone.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing failed (stream stopped by the peer, connection lost).
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading failed (stream reset by the peer, connection lost).
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The send stream was already finished or reset.
    #[error("stream already closed: {0}")]
    StreamClosed(#[from] quinn::ClosedStream),
}

impl FrameError {
    /// A short fixed label for metrics (`reason` label values).
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Truncated => "truncated",
            Self::Decode(_) => "decode",
            Self::Encode(_) => "encode",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Connection(_) => "connection",
            Self::Write(_) => "write",
            Self::Read(_) => "read",
            Self::StreamClosed(_) => "stream_closed",
        }
    }
}

/// Writes `m` as one frame: the length prefix and the body in a single buffer, one write.
/// A message over [`MAX_FRAME`] is refused with [`FrameError::TooLarge`] before anything is
/// sent. Does not finish the stream.
pub async fn write_msg<M: Message>(send: &mut SendStream, m: &M) -> Result<(), FrameError> {
    let len = m.encoded_len();
    let too_large = || FrameError::TooLarge {
        len,
        max: MAX_FRAME,
    };
    if len > MAX_FRAME {
        return Err(too_large());
    }
    let prefix = u32::try_from(len).map_err(|_| too_large())?;
    let mut buf = Vec::with_capacity(HEADER + len);
    buf.extend_from_slice(&prefix.to_be_bytes());
    m.encode(&mut buf)?;
    send.write_chunk(Bytes::from(buf)).await?;
    Ok(())
}

/// Reads one frame and decodes it. `Ok(None)` when the stream ends cleanly before any byte
/// of a length prefix; [`FrameError::TooLarge`] (body left unread) when the length is over
/// `max`; [`FrameError::Truncated`] when the stream ends inside the frame.
pub async fn read_msg<M: Message + Default>(
    recv: &mut RecvStream,
    max: usize,
) -> Result<Option<M>, FrameError> {
    let mut head = [0u8; HEADER];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let len = usize::try_from(u32::from_be_bytes(head)).unwrap_or(usize::MAX);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    // From `Bytes`, so that `bytes` fields of the message share the buffer instead of copying.
    Ok(Some(M::decode(Bytes::from(body))?))
}

/// Sends `req` on a new bidirectional stream of `conn`, finishes the stream and reads one
/// response of at most `max` bytes. The whole exchange is bounded by `timeout`
/// ([`FrameError::Timeout`]); a stream finished without a response gives
/// [`FrameError::Closed`].
pub async fn request<Req: Message, Resp: Message + Default>(
    conn: &quinn::Connection,
    req: &Req,
    max: usize,
    timeout: Duration,
) -> Result<Resp, FrameError> {
    match tokio::time::timeout(timeout, exchange(conn, req, max)).await {
        Ok(result) => result,
        Err(_) => Err(FrameError::Timeout),
    }
}

/// Why [`request_once`] got no answer, and whether the peer may have processed the request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request certainly did not reach the peer's handler (no stream could be opened, or
    /// the peer shut down with [`super::CLOSE_SHUTDOWN`] before answering): safe to resend.
    #[error("not sent: {0}")]
    NotSent(FrameError),
    /// The request may have been processed but no answer came back: resending could apply
    /// it twice.
    #[error("sent, no answer: {0}")]
    MaybeSent(FrameError),
}

/// Like [`request`], but tells a request that never reached the peer from one whose
/// outcome is unknown; `timeout` bounds the whole exchange.
pub async fn request_once<Req: Message, Resp: Message + Default>(
    conn: &quinn::Connection,
    req: &Req,
    max: usize,
    timeout: Duration,
) -> Result<Resp, RequestError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut send, mut recv) = match tokio::time::timeout_at(deadline, conn.open_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(RequestError::NotSent(e.into())),
        Err(_) => return Err(RequestError::NotSent(FrameError::Timeout)),
    };
    let answer = tokio::time::timeout_at(deadline, async {
        write_msg(&mut send, req).await?;
        let _ = send.finish();
        read_msg(&mut recv, max).await?.ok_or(FrameError::Closed)
    })
    .await
    .unwrap_or(Err(FrameError::Timeout));
    answer.map_err(|e| {
        if super::closed_by_shutdown(conn) {
            RequestError::NotSent(e)
        } else {
            RequestError::MaybeSent(e)
        }
    })
}

/// The body of [`request`], without the timeout.
async fn exchange<Req: Message, Resp: Message + Default>(
    conn: &quinn::Connection,
    req: &Req,
    max: usize,
) -> Result<Resp, FrameError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_msg(&mut send, req).await?;
    send.finish()?;
    read_msg(&mut recv, max).await?.ok_or(FrameError::Closed)
}
