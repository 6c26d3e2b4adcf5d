//! Reading a PROXY protocol header off an accepted socket, under the listener's
//! `proxy_protocol_timeout_ms`: only as many bytes as the header can hold (107 for v1,
//! 64 KiB + 16 for v2) plus one small read-ahead, whatever the sender does. Bytes read past
//! the header are handed on with the socket ([`Socket`]), never lost. Every outcome is
//! counted in `meshmq_proxy_protocol_total{result}`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meshmq_shared::metrics as m;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::prefixed::Socket;
use super::proxy_protocol::{Parsed, ProxyError, parse};

/// Bytes asked for per read beyond what the header still needs (the client's first bytes
/// often come in the same segment).
const READ_AHEAD: usize = 512;

/// Why a connection was closed before its header was read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection did not start with a header (or closed first).
    #[error("no PROXY protocol header")]
    Missing,
    /// A header that does not parse.
    #[error(transparent)]
    Invalid(ProxyError),
    /// The header did not arrive in time.
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
}

impl HeaderError {
    /// The `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            HeaderError::Missing => "missing",
            HeaderError::Invalid(_) => "invalid",
            HeaderError::Timeout(_) => "timeout",
        }
    }
}

/// Counts one outcome in `meshmq_proxy_protocol_total{result}`.
pub fn count(result: &'static str) {
    metrics::counter!(m::PROXY_PROTOCOL_TOTAL, "result" => result).increment(1);
}

/// Reads the header of `stream` within `timeout`: the socket (with what was read past the
/// header) and the client address the header names (`None`: LOCAL/UNKNOWN, keep the
/// socket's). Counts the outcome.
pub async fn read_header(
    mut stream: TcpStream,
    timeout: Duration,
) -> Result<(Socket, Option<SocketAddr>), HeaderError> {
    let mut buf = BytesMut::new();
    let work = async {
        loop {
            match parse(&buf) {
                Ok(Parsed::Complete { len, source }) => return Ok((len, source)),
                Ok(Parsed::Incomplete { need }) => {
                    buf.reserve(need - buf.len() + READ_AHEAD);
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return Err(HeaderError::Missing),
                        Ok(_) => {}
                    }
                }
                Err(ProxyError::Missing) => return Err(HeaderError::Missing),
                Err(e) => return Err(HeaderError::Invalid(e)),
            }
        }
    };
    let outcome = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HeaderError::Timeout(timeout)),
    };
    match outcome {
        Ok((len, source)) => {
            count("ok");
            // A copy of the few bytes after the header: the header's buffer (up to 64 KiB)
            // is freed now.
            let rest = Bytes::copy_from_slice(&buf[len..]);
            Ok((Socket::new(stream, rest), source))
        }
        Err(e) => {
            count(e.label());
            Err(e)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn a_header_in_pieces_then_data() {
        let (mut c, s) = pair().await;
        let reader = tokio::spawn(read_header(s, Duration::from_secs(5)));
        c.write_all(b"PROXY TCP4 192.0.2.1 10.0.0.1 5 ")
            .await
            .unwrap();
        c.flush().await.unwrap();
        c.write_all(b"1883\r\nhello").await.unwrap();
        let (mut sock, source) = reader.await.unwrap().unwrap();
        assert_eq!(source, Some("192.0.2.1:5".parse().unwrap()));
        let mut hello = [0u8; 5];
        sock.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
    }

    #[tokio::test]
    async fn missing_invalid_and_timeout() {
        let (mut c, s) = pair().await;
        c.write_all(&[0x10, 0x0c, 0, 4]).await.unwrap();
        let e = read_header(s, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.label(), "missing");

        let (mut c, s) = pair().await;
        c.write_all(b"PROXY TCP4 x y 1 2\r\n").await.unwrap();
        let e = read_header(s, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.label(), "invalid");

        let (mut c, s) = pair().await;
        c.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        let e = read_header(s, Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e.label(), "timeout");

        let (c, s) = pair().await;
        drop(c);
        let e = read_header(s, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.label(), "missing");
    }
}
