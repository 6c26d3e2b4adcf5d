//! Session resumption of a listener: the TLS 1.3 (and 1.2) ticket keys and the TLS 1.2
//! session cache, kept across reloads that leave the trust files alone.
//!
//! A resumed session skips the client-certificate check, so every [`Resumption`] has a
//! deadline: the first `nextUpdate` of the CRLs in use when it was made. From that moment
//! its tickets no longer open and its cached sessions are no longer found — checked when a
//! client presents them, not when its connection was accepted — so a client cannot ride a
//! session from before a CRL expired past the expiry (the full handshake then refuses it).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};

use super::TlsLoadError;

/// TLS 1.2 sessions remembered for session-ID resumption (tickets need no server memory).
const SESSION_CACHE_ENTRIES: usize = 1024;

/// Ticket keys and session cache, valid until `not_after`.
#[derive(Clone)]
pub(crate) struct Resumption {
    /// Issues and opens tickets; `None` when sessions are not reused.
    ticketer: Option<Arc<dyn ProducesTickets>>,
    /// Session-ID cache for TLS 1.2 clients without tickets.
    cache: Option<Arc<dyn StoresServerSessions>>,
    /// Unix second from which nothing resumes (`i64::MAX`: no CRL deadline).
    not_after: i64,
}

impl Resumption {
    /// No resumption at all.
    pub(crate) fn none() -> Resumption {
        Resumption {
            ticketer: None,
            cache: None,
            not_after: i64::MAX,
        }
    }

    /// New ticket keys and an empty cache that stop resuming at `not_after` (Unix seconds;
    /// `reuse` false: no resumption).
    pub(crate) fn new(reuse: bool, not_after: i64) -> Result<Resumption, TlsLoadError> {
        if !reuse {
            return Ok(Resumption::none());
        }
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsLoadError::Config(e.to_string()))?;
        Ok(Resumption {
            ticketer: Some(Arc::new(Tickets {
                inner: ticketer,
                not_after,
            })),
            cache: Some(Arc::new(Cache {
                inner: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
                not_after,
            })),
            not_after,
        })
    }

    /// Whether its deadline has passed (it resumes nothing any more).
    pub(crate) fn expired(&self) -> bool {
        unix_now() >= self.not_after
    }

    /// Sets `config` to resume sessions with these keys and cache, or not at all.
    pub(crate) fn apply(&self, config: &mut ServerConfig) {
        match (&self.ticketer, &self.cache) {
            (Some(ticketer), Some(cache)) => {
                config.ticketer = ticketer.clone();
                config.session_storage = cache.clone();
                // One ticket per connection: an MQTT client holds one connection and
                // resumes it once; each ticket costs a record and an encryption.
                config.send_tls13_tickets = 1;
            }
            _ => {
                config.ticketer = Arc::new(NoTickets);
                config.session_storage = Arc::new(NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
            }
        }
    }
}

/// No tickets issued or opened (what a configuration without resumption uses, also when
/// it was copied from one that had keys).
#[derive(Debug)]
struct NoTickets;

impl ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// Tickets that stop opening at `not_after`.
#[derive(Debug)]
struct Tickets {
    inner: Arc<dyn ProducesTickets>,
    not_after: i64,
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if unix_now() >= self.not_after {
            return None;
        }
        self.inner.decrypt(cipher)
    }
}

/// A session cache that stops answering at `not_after`.
#[derive(Debug)]
struct Cache {
    inner: Arc<ServerSessionMemoryCache>,
    not_after: i64,
}

impl StoresServerSessions for Cache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if unix_now() >= self.not_after {
            return None;
        }
        self.inner.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        if unix_now() >= self.not_after {
            return None;
        }
        self.inner.take(key)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The first of the ascending `times` after `now` (`i64::MAX`: none).
pub(crate) fn first_after(times: &[i64], now: i64) -> i64 {
    times.iter().copied().find(|t| *t > now).unwrap_or(i64::MAX)
}
