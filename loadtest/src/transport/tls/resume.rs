//! `--tls-resume`: loadtest's own TLS session store, so a reconnect storm measures resumed
//! handshakes rather than full ones.
//!
//! One [`SessionStore`] per broker *address* (rustls keys sessions by server name only, and
//! two brokers on one machine, meshmq and mosquitto or the replicants of a dev cluster, are
//! all `localhost`: a ticket of one is worthless to the other), shared by every client of
//! the process, holding each client's own sessions: the TLS 1.3 tickets of its last
//! connection (each used once, as TLS 1.3 requires), its TLS 1.2 session and its
//! key-exchange hint. So a client resumes its own session like a device would, the first
//! connect of every client is a full handshake and every reconnect resumes when the broker
//! allows it. A pool shared between clients would not do: servers hand out one or two
//! tickets per connection (OpenSSL one after a resumption), so clients that reconnect
//! together drain it and some fall back to full handshakes (16% of a 1 000-client
//! reconnect against mosquitto).
//!
//! [`Resumer`] gives each connection a client configuration whose session store is a
//! [`ClientView`] of its address's store. Bounded: tickets per client, clients per store,
//! addresses.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::{ClientConfig, NamedGroup};
use rustls_pki_types::ServerName;

/// TLS 1.3 tickets kept per client and server name (servers send one or two per
/// connection; the oldest is dropped first).
pub const TICKETS_PER_CLIENT: usize = 2;

/// Clients (with their server names) kept per store: a process holds at most ~20 000
/// connections; past this, further clients do full handshakes.
pub const CLIENTS_PER_STORE: usize = 100_000;

/// Broker addresses with their own store; connections to further addresses do full
/// handshakes.
const ADDRESSES: usize = 1_024;

/// What is kept for one client and server name.
#[derive(Debug, Default)]
struct Entry {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

type Key = (Arc<str>, ServerName<'static>);

/// The sessions of every client that reaches one address.
#[derive(Debug)]
pub struct SessionStore {
    entries: Mutex<HashMap<Key, Entry>>,
    max_clients: usize,
}

impl SessionStore {
    /// An empty store for up to `max_clients` (client, server name) pairs.
    pub fn new(max_clients: usize) -> SessionStore {
        SessionStore {
            entries: Mutex::default(),
            max_clients,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written that matters:
        // at worst a ticket is lost and that handshake is a full one.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the entry of `key`, creating it if there is room.
    fn with_entry(&self, key: Key, f: impl FnOnce(&mut Entry)) {
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.max_clients {
            return;
        }
        f(entries.entry(key).or_default());
    }

    /// TLS 1.3 tickets held now for `client` and `name`.
    pub fn tickets(&self, client: &str, name: &ServerName<'static>) -> usize {
        self.lock()
            .get(&(Arc::from(client), name.clone()))
            .map_or(0, |e| e.tls13.len())
    }
}

/// One client's view of a [`SessionStore`]: what rustls sees as the session store of that
/// client's connections.
#[derive(Debug)]
pub struct ClientView {
    store: Arc<SessionStore>,
    client: Arc<str>,
}

impl ClientView {
    fn key(&self, name: &ServerName<'_>) -> Key {
        (self.client.clone(), name.to_owned())
    }
}

impl ClientSessionStore for ClientView {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.store
            .with_entry(self.key(&server_name), |e| e.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.store
            .lock()
            .get(&self.key(server_name))
            .and_then(|e| e.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.store
            .with_entry(self.key(&server_name), |e| e.tls12 = Some(value));
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.store
            .lock()
            .get(&self.key(server_name))
            .and_then(|e| e.tls12.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        if let Some(e) = self.store.lock().get_mut(&self.key(server_name)) {
            e.tls12 = None;
        }
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.store.with_entry(self.key(&server_name), |e| {
            while e.tls13.len() >= TICKETS_PER_CLIENT {
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
        self.store
            .lock()
            .get_mut(&self.key(server_name))
            .and_then(|e| e.tls13.pop_back())
    }
}

/// One [`SessionStore`] per broker address, and the client configurations that use it.
#[derive(Debug)]
pub struct Resumer {
    base: Arc<ClientConfig>,
    by_addr: Mutex<HashMap<SocketAddr, Arc<SessionStore>>>,
}

impl Resumer {
    /// Resumption on for connections made with configurations derived from `base`.
    pub fn new(base: Arc<ClientConfig>) -> Resumer {
        Resumer {
            base,
            by_addr: Mutex::default(),
        }
    }

    /// The store of `addr`, made on first use; `None` past [`ADDRESSES`] addresses.
    fn store_for(&self, addr: SocketAddr) -> Option<Arc<SessionStore>> {
        let mut by_addr = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = by_addr.get(&addr) {
            return Some(store.clone());
        }
        if by_addr.len() >= ADDRESSES {
            return None;
        }
        let store = Arc::new(SessionStore::new(CLIENTS_PER_STORE));
        by_addr.insert(addr, store.clone());
        Some(store)
    }

    /// The configuration for a connection of `client` to `addr`: the base one with that
    /// client's view of the address's store (the base alone, no resumption, past the
    /// bounds). A clone of the base per connection: a few small allocations, far less than
    /// a handshake.
    pub fn config_for(&self, addr: SocketAddr, client: &str) -> Arc<ClientConfig> {
        let Some(store) = self.store_for(addr) else {
            return self.base.clone();
        };
        let mut config = (*self.base).clone();
        config.resumption = Resumption::store(Arc::new(ClientView {
            store,
            client: Arc::from(client),
        }));
        Arc::new(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_owned()).unwrap()
    }

    fn view(store: &Arc<SessionStore>, client: &str) -> ClientView {
        ClientView {
            store: store.clone(),
            client: Arc::from(client),
        }
    }

    #[test]
    fn each_client_has_its_own_entries_and_clients_are_bounded() {
        let store = Arc::new(SessionStore::new(3));
        let (a, b) = (view(&store, "a"), view(&store, "b"));
        a.set_kx_hint(name("x.test"), NamedGroup::X25519);
        assert_eq!(a.kx_hint(&name("x.test")), Some(NamedGroup::X25519));
        assert_eq!(b.kx_hint(&name("x.test")), None);
        assert_eq!(a.kx_hint(&name("y.test")), None);
        for c in ["b", "c", "d", "e"] {
            view(&store, c).set_kx_hint(name("x.test"), NamedGroup::secp256r1);
        }
        assert_eq!(store.lock().len(), 3);
        assert_eq!(view(&store, "e").kx_hint(&name("x.test")), None);
        assert_eq!(store.tickets("a", &name("x.test")), 0);
    }

    fn base() -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::super::any_cert::AnyCert(provider)))
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn each_address_gets_its_own_store_up_to_the_bound() {
        let resumer = Resumer::new(base());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let sa = resumer.store_for(a).unwrap();
        assert!(Arc::ptr_eq(&sa, &resumer.store_for(a).unwrap()));
        assert!(!Arc::ptr_eq(&sa, &resumer.store_for(b).unwrap()));
        assert!(!Arc::ptr_eq(&resumer.config_for(a, "c1"), &resumer.base));
        for port in 3..(ADDRESSES as u16 + 10) {
            resumer.store_for(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let past: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert!(resumer.store_for(past).is_none());
        assert!(Arc::ptr_eq(&resumer.config_for(past, "c1"), &resumer.base));
    }
}
