//! The node's sessions by client id, and which connection (if any) owns each.
//!
//! A [`SessionSlot`] lives as long as the session: across connections for persistent
//! sessions, until expiry. Exactly one connection owns a slot at a time (`owner`); a newer
//! CONNECT for the same client id takes ownership under the slot lock and kicks the old
//! connection through its control channel, which then exits without touching the session.
//! Timers (will delay, session expiry) capture the slot's `epoch` and act only if no
//! connection came back since.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use hashbrown::HashMap;
use meshmq_shared::codec::ReasonCode;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::mailbox::Mailbox;
use crate::session::Session;

/// Node-local identity of a session (never reused within a process).
pub type SessionId = u64;

/// Node-local identity of a connection (never reused within a process).
pub type ConnId = u64;

/// What a connection task is told from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Another connection took the session over (or discarded it with clean start):
    /// send DISCONNECT with `reason` (5.0) and close; publish the will if `will_now`.
    Kick {
        /// DISCONNECT reason (0x8E session taken over, 0x8B shutting down, ...).
        reason: ReasonCode,
        /// Whether the will must be published at once (the session ended, or no delay).
        session_ends: bool,
    },
    /// A ban that matches this client was applied: send DISCONNECT 0x98 Administrative
    /// action (5.0; 3.1.1: just close) and close; the session ends with the connection.
    Banned,
    /// An operator kicked the client (`DELETE /api/v5/clients/{clientid}`): send DISCONNECT
    /// 0x98 Administrative action (5.0; 3.1.1: just close) and close; the will is published
    /// at once and the session is discarded, as EMQX's kick does.
    /// The connection ends as `Exit::Kicked` with reason 0x98 (counted and reported as
    /// `kicked`).
    AdminKick,
    /// The node is being evacuated: send DISCONNECT 0x9C Use another server (5.0, with
    /// `server_reference` if set; 3.1.1: just close) and close as a server-side close
    /// (the session stays for its expiry, the will follows the normal rules).
    Evict {
        /// MQTT 5 Server Reference (the evacuation's `redirect_to`).
        server_reference: Option<Arc<str>>,
    },
}

/// Mutable part of a slot, under its lock.
#[derive(Debug)]
pub struct SlotInner {
    /// The session state.
    pub session: Session,
    /// The connection that owns the session now, if connected.
    pub owner: Option<ConnId>,
    /// Control channel of the owning connection.
    pub control: Option<oneshot::Sender<Control>>,
    /// Registry generation of the latest connection (from the table claim).
    pub generation: u64,
    /// Effective session expiry interval in seconds (after the node's cap).
    pub expiry_secs: u32,
    /// Bumped on every (re)connect and on end: timers that captured an older value are void.
    pub epoch: u64,
    /// True once the session ended (expired or discarded); the slot is then unusable.
    pub ended: bool,
    /// Where the session stands with respect to another node that claimed its client id.
    pub leaving: Leaving,
    /// The latest connection as the REST API shows it (`None` for a session restored or
    /// adopted without a connection yet).
    pub conn_info: Option<Arc<ConnInfo>>,
    /// When the latest connection ended (unix ms; 0 while connected or never connected).
    pub disconnected_at_ms: u64,
}

/// What the REST API shows about a session's connection, recorded at CONNECT.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The authenticated user name.
    pub username: Option<Arc<str>>,
    /// The client's address (the one a proxy header named, if any).
    pub peer: SocketAddr,
    /// The protocol level (3: 3.1, 4: 3.1.1, 5: 5.0).
    pub proto_ver: u8,
    /// The keep-alive in force, seconds.
    pub keepalive: u16,
    /// Clean Start (3.1.1: Clean Session).
    pub clean_start: bool,
    /// When the CONNECT succeeded (unix ms).
    pub connected_at_ms: u64,
    /// The listener it came in on (`tcp:default`).
    pub listener: Arc<str>,
}

/// Counters of a session for the REST API (relaxed atomics: figures, not decisions).
#[derive(Debug, Default)]
pub struct SlotStats {
    /// PUBLISH packets received from the client.
    pub recv_msg: AtomicU64,
    /// PUBLISH packets sent to the client.
    pub send_msg: AtomicU64,
    /// Deliveries dropped from the session's queue (full, expired, too large).
    pub mqueue_dropped: AtomicU64,
}

/// A session claimed by another node, on its way there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leaving {
    /// Not claimed elsewhere.
    #[default]
    No,
    /// The claim was seen; waiting (bounded) for the new owner's hand-over request.
    AwaitingRequest,
    /// Handed over: what still reaches this copy is forwarded to the new owner. The will
    /// and expiry timers of this copy are void (the client is connected elsewhere).
    Forwarding,
}

/// A session and its mailbox.
#[derive(Debug)]
pub struct SessionSlot {
    /// Node-local session id (router key).
    pub id: SessionId,
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Deliveries routed to this session.
    pub mailbox: Arc<Mailbox>,
    /// Session state and ownership.
    pub inner: Mutex<SlotInner>,
    /// When the session was created (unix ms).
    pub created_at_ms: u64,
    /// Message counters (REST API).
    pub stats: SlotStats,
}

/// Sessions of this node by client id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_client: Mutex<HashMap<Arc<str>, Arc<SessionSlot>>>,
}

impl Sessions {
    /// The slot of `client_id`, if it has a session here.
    pub fn get(&self, client_id: &str) -> Option<Arc<SessionSlot>> {
        self.by_client.lock().get(client_id).cloned()
    }

    /// Installs `slot` for its client id, returning the slot it replaces.
    pub fn insert(&self, slot: Arc<SessionSlot>) -> Option<Arc<SessionSlot>> {
        self.by_client.lock().insert(slot.client_id.clone(), slot)
    }

    /// Removes `slot` if it is still the one registered for its client id.
    pub fn remove_if_current(&self, slot: &Arc<SessionSlot>) -> bool {
        let mut map = self.by_client.lock();
        match map.get(&slot.client_id) {
            Some(cur) if Arc::ptr_eq(cur, slot) => {
                map.remove(&slot.client_id);
                true
            }
            _ => false,
        }
    }

    /// Number of sessions (connected or not).
    pub fn len(&self) -> usize {
        self.by_client.lock().len()
    }

    /// True when there is no session.
    pub fn is_empty(&self) -> bool {
        self.by_client.lock().is_empty()
    }

    /// Every slot (for shutdown).
    pub fn all(&self) -> Vec<Arc<SessionSlot>> {
        self.by_client.lock().values().cloned().collect()
    }

    /// The slots whose client id `keep` accepts (the map's lock is held while `keep` runs:
    /// it must not lock a slot).
    pub fn select(&self, mut keep: impl FnMut(&str) -> bool) -> Vec<Arc<SessionSlot>> {
        self.by_client
            .lock()
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|(_, slot)| slot.clone())
            .collect()
    }
}
