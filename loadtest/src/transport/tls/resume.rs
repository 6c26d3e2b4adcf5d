//! `--tls-resume`: loadtest's own TLS session store, so a reconnect storm measures resumed
//! handshakes rather than full ones.
//!
//! rustls's built-in cache keeps at most 8 TLS 1.3 tickets per server name, so when a
//! thousand clients reconnect at once only 8 could resume. [`SessionStore`] keeps up to
//! [`TICKETS_PER_SERVER`] tickets (each usable once, as TLS 1.3 requires) plus the latest
//! TLS 1.2 session and key-exchange hint per name, shared by every client of the process.
//!
//! It is per server *address*: [`Resumer`] gives each broker address its own client
//! configuration with its own store, because rustls keys a store by server name only and
//! two brokers on one machine (meshmq and mosquitto, or the replicants of a dev cluster) are
//! all `localhost` or `127.0.0.1`; a ticket of one is worthless to the other.
//! Bounded: tickets per server (oldest dropped first), server names per store, addresses.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::{ClientConfig, NamedGroup};
use rustls_pki_types::ServerName;

/// TLS 1.3 tickets kept per server (a process holds at most ~20 000 connections, and a
/// server hands out one or two tickets per connection).
pub const TICKETS_PER_SERVER: usize = 32_768;

/// Server names kept per store (one address is normally reached under one name).
const NAMES_PER_STORE: usize = 64;

/// Broker addresses with their own store; connections to further addresses do full
/// handshakes.
const ADDRESSES: usize = 1_024;

/// What is kept for one server name.
#[derive(Debug, Default)]
struct Entry {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

/// A bounded [`ClientSessionStore`] shared by every client that reaches one address.
#[derive(Debug)]
pub struct SessionStore {
    entries: Mutex<HashMap<ServerName<'static>, Entry>>,
    tickets_per_server: usize,
}

impl SessionStore {
    /// An empty store keeping up to `tickets_per_server` TLS 1.3 tickets per name.
    pub fn new(tickets_per_server: usize) -> SessionStore {
        SessionStore {
            entries: Mutex::default(),
            tickets_per_server: tickets_per_server.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ServerName<'static>, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written that matters:
        // at worst a ticket is lost and that handshake is a full one.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the entry of `name`, creating it if there is room.
    fn with_entry(&self, name: ServerName<'static>, f: impl FnOnce(&mut Entry)) {
        let mut entries = self.lock();
        if !entries.contains_key(&name) && entries.len() >= NAMES_PER_STORE {
            return;
        }
        f(entries.entry(name).or_default());
    }

    /// TLS 1.3 tickets held for `name` now.
    pub fn tickets(&self, name: &ServerName<'_>) -> usize {
        self.lock().get(name).map_or(0, |e| e.tls13.len())
    }
}

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.with_entry(server_name, |e| e.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().get(server_name).and_then(|e| e.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with_entry(server_name, |e| e.tls12 = Some(value));
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.lock().get(server_name).and_then(|e| e.tls12.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        if let Some(e) = self.lock().get_mut(server_name) {
            e.tls12 = None;
        }
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let cap = self.tickets_per_server;
        self.with_entry(server_name, |e| {
            while e.tls13.len() >= cap {
                e.tls13.pop_front();
            }
            e.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        // Newest first: the oldest are the likeliest to have expired.
        self.lock()
            .get_mut(server_name)
            .and_then(|e| e.tls13.pop_back())
    }
}

/// One client configuration (with its own [`SessionStore`]) per broker address, made from a
/// base configuration on first use.
#[derive(Debug)]
pub struct Resumer {
    base: Arc<ClientConfig>,
    by_addr: Mutex<HashMap<SocketAddr, Arc<ClientConfig>>>,
}

impl Resumer {
    /// Resumption on for connections made with configurations derived from `base`.
    pub fn new(base: Arc<ClientConfig>) -> Resumer {
        Resumer {
            base,
            by_addr: Mutex::default(),
        }
    }

    /// The configuration for `addr`: its own, or the base (no resumption) past
    /// [`ADDRESSES`] addresses.
    pub fn config_for(&self, addr: SocketAddr) -> Arc<ClientConfig> {
        let mut by_addr = self
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = by_addr.get(&addr) {
            return config.clone();
        }
        if by_addr.len() >= ADDRESSES {
            return self.base.clone();
        }
        let mut config = (*self.base).clone();
        config.resumption = Resumption::store(Arc::new(SessionStore::new(TICKETS_PER_SERVER)));
        let config = Arc::new(config);
        by_addr.insert(addr, config.clone());
        config
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn kx_hints_are_kept_per_name_and_names_are_bounded() {
        let store = SessionStore::new(4);
        store.set_kx_hint(name("a.test"), NamedGroup::X25519);
        assert_eq!(store.kx_hint(&name("a.test")), Some(NamedGroup::X25519));
        assert_eq!(store.kx_hint(&name("b.test")), None);
        for i in 0..NAMES_PER_STORE * 2 {
            store.set_kx_hint(name(&format!("n{i}.test")), NamedGroup::secp256r1);
        }
        assert_eq!(store.lock().len(), NAMES_PER_STORE);
    }

    #[test]
    fn each_address_gets_its_own_store_up_to_the_bound() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let base = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::super::any_cert::AnyCert(provider)))
            .with_no_client_auth();
        let resumer = Resumer::new(Arc::new(base));
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let ca = resumer.config_for(a);
        assert!(Arc::ptr_eq(&ca, &resumer.config_for(a)));
        assert!(!Arc::ptr_eq(&ca, &resumer.config_for(b)));
        assert!(!Arc::ptr_eq(&ca, &resumer.base));
        for port in 3..(ADDRESSES as u16 + 10) {
            resumer.config_for(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let past = resumer.config_for("127.0.0.2:1".parse().unwrap());
        assert!(Arc::ptr_eq(&past, &resumer.base));
    }
}
