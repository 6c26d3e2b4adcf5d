//! Why a client failed, as a short label the progress line and the report count by:
//! `timeout`, `refused`, `reset`, `closed`, `connack 0x87`, `disconnect 0x8b`, `tls`, `ws`,
//! `too many open files`, ... ([`reason_of`]), and the error types the session layer raises
//! so the label does not depend on message text.
//!
//! Pure; it never decides what to do about a failure.

use std::fmt;
use std::io;

use crate::wire::WireError;

/// A network wait that ran out of time; the text says which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub &'static str);

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out waiting for {}", self.0)
    }
}

impl std::error::Error for Timeout {}

/// The broker closed the connection (end of stream) without a DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection closed by the broker")
    }
}

impl std::error::Error for Closed {}

/// The broker sent a DISCONNECT (reason code; 0 before MQTT 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDisconnect {
    /// The reason code.
    pub code: u8,
    /// The MQTT 5 Reason String, if any.
    pub reason: Option<String>,
}

impl fmt::Display for ServerDisconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker sent DISCONNECT {:#04x}", self.code)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerDisconnect {}

/// A redirect (Server Reference) that could not be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRedirect(pub String);

impl fmt::Display for BadRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot follow Server Reference: {}", self.0)
    }
}

impl std::error::Error for BadRedirect {}

/// The short label of `err`, from the first cause in its chain that says something.
pub fn reason_of(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        if cause.downcast_ref::<Timeout>().is_some() {
            return "timeout".into();
        }
        if cause.downcast_ref::<Closed>().is_some() {
            return "closed".into();
        }
        if let Some(d) = cause.downcast_ref::<ServerDisconnect>() {
            return format!("disconnect {:#04x}", d.code);
        }
        if cause.downcast_ref::<BadRedirect>().is_some() {
            return "bad redirect".into();
        }
        if let Some(wire) = cause.downcast_ref::<WireError>() {
            return match wire {
                WireError::ConnectRefused(code) => format!("connack {code:#04x}"),
                WireError::SubscribeRefused(code) => format!("suback {code:#04x}"),
                _ => "protocol".into(),
            };
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return "tls".into();
        }
        if cause
            .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
            .is_some()
        {
            return "ws".into();
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return "tls".into();
            }
            return io_reason(io).into();
        }
    }
    "other".into()
}

fn io_reason(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(24) => return "too many open files",
        Some(99) => return "no local port",
        _ => {}
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
        io::ErrorKind::ConnectionAborted => "aborted",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::UnexpectedEof => "closed",
        io::ErrorKind::InvalidData => "tls",
        _ => "io",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn labels_follow_the_cause_chain() {
        let e = anyhow::Error::new(Timeout("CONNACK")).context("client 3");
        assert_eq!(reason_of(&e), "timeout");
        let e: anyhow::Error = Err::<(), _>(WireError::ConnectRefused(0x87))
            .context("x")
            .unwrap_err();
        assert_eq!(reason_of(&e), "connack 0x87");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(reason_of(&anyhow::Error::new(refused)), "refused");
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(
            reason_of(&anyhow::Error::new(emfile)),
            "too many open files"
        );
        let d = ServerDisconnect {
            code: 0x8b,
            reason: None,
        };
        assert_eq!(reason_of(&anyhow::Error::new(d)), "disconnect 0x8b");
        assert_eq!(reason_of(&anyhow::anyhow!("what")), "other");
    }
}
