//! REST API calls between replicants (the cluster fan-out's transport): a node opens a
//! bidirectional stream to another node's peer endpoint (mutual TLS against the cluster CA),
//! writes one `ApiCall` frame and reads one `ApiReply` frame.
//!
//! Outgoing ([`super::Peers::api_call`]): one pooled connection per called node ([`Pool`],
//! closed after [`API_IDLE`] unused), one stream per call, bounded by the caller's timeout
//! and by [`MAX_REPLY`]; it never disturbs the forwarding links. Incoming ([`serve`]): the call is handed to the handler the broker installed with
//! [`super::Peers::set_api_handler`] (its API router); at most [`MAX_CONCURRENT`] calls are
//! read or served at once on this node, each read within [`READ_TIMEOUT`] or dropped. A malformed or oversized call
//! is counted in `meshmq_peer_malformed_total{reason}` and its stream dropped. A call whose
//! stated `from` is not the node its connection's certificate was issued to (the
//! certificate's common name, see `crate::core_handle::cert_name`) is refused with 403 and
//! counted in `meshmq_peer_api_refused_total{reason="certificate"}`; what else a caller may
//! do is the handler's decision (`crate::fanout`). It never interprets a call (the handler
//! does) and never panics on what a peer sends.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmq_proto::peer::{ApiCall, ApiReply};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::endpoint;
use meshmq_shared::quic::frame::{self, FrameError, RequestError};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::link::Dialer;

/// Largest call accepted (method, path and body).
pub const MAX_CALL: usize = 1 << 20;
/// Largest reply accepted.
pub const MAX_REPLY: usize = 16 << 20;
/// Most calls read or served at once on this node; more wait for a slot within the read
/// timeout, then get a 503.
const MAX_CONCURRENT: usize = 64;
/// A call must arrive within this long after its stream opened.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a served call may run before the stream is given up.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Application code sent with `STOP_SENDING` on a dropped call stream.
const STOP_MALFORMED: u32 = 1;

/// The future an [`ApiHandler`] returns.
pub type ApiFuture = Pin<Box<dyn Future<Output = ApiReply> + Send>>;

/// Runs an API call received from a peer and gives its reply.
pub type ApiHandler = Arc<dyn Fn(ApiCall) -> ApiFuture + Send + Sync>;

/// Why an outgoing call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// No endpoint to dial from (the node is shutting down).
    #[error("cannot dial: {0}")]
    Dial(String),
    /// The connection could not be made.
    #[error("connect: {0}")]
    Connect(#[from] meshmq_shared::quic::QuicError),
    /// The exchange failed or timed out.
    #[error("exchange: {0}")]
    Exchange(#[from] FrameError),
}

/// The incoming side's shared state: the handler once installed, and the slots.
pub(super) struct Inbound {
    /// Installed by the broker once its router exists; calls before that answer 503.
    handler: std::sync::OnceLock<ApiHandler>,
    /// Bounds the calls served at once.
    slots: Arc<Semaphore>,
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            handler: std::sync::OnceLock::new(),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }
}

impl Inbound {
    /// Installs the handler (the first one wins).
    pub(super) fn set(&self, handler: ApiHandler) {
        let _ = self.handler.set(handler);
    }
}

/// Outgoing API connections, one per peer address, reused by every call to it (they count
/// against the called node's connection cap, so one per node pair, not one per call). A
/// connection idle for [`API_IDLE`] is closed by the next call that looks (to any node).
#[derive(Default)]
pub(super) struct Pool {
    /// The slot of each address called; its async lock serialises dialing that address.
    slots: parking_lot::Mutex<HashMap<SocketAddr, Slot>>,
}

/// One address's connection, if any, and when it was last used.
type Slot = Arc<tokio::sync::Mutex<Option<(quinn::Connection, Instant)>>>;

/// A pooled connection unused this long is closed.
pub(super) const API_IDLE: Duration = Duration::from_secs(30);

impl Pool {
    /// A live connection to `addr`: the pooled one, or a new one (dialed within `deadline`)
    /// that is pooled. The flag tells a pooled connection (which may have gone stale) from a
    /// fresh one.
    async fn get(
        &self,
        dialer: &Dialer,
        addr: SocketAddr,
        deadline: tokio::time::Instant,
    ) -> Result<(quinn::Connection, bool), ApiCallError> {
        self.close_idle(addr);
        let slot = self.slots.lock().entry(addr).or_default().clone();
        let mut slot = tokio::time::timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| ApiCallError::Exchange(FrameError::Timeout))?;
        if let Some((conn, used)) = slot.as_mut()
            && conn.close_reason().is_none()
        {
            *used = Instant::now();
            return Ok((conn.clone(), true));
        }
        let ep = dialer.endpoint_for(addr).map_err(ApiCallError::Dial)?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let conn = endpoint::connect(&ep, addr, left).await?;
        *slot = Some((conn.clone(), Instant::now()));
        Ok((conn, false))
    }

    /// Forgets `conn` if it is still the one pooled for `addr` (it failed).
    fn drop_conn(&self, addr: SocketAddr, conn: &quinn::Connection) {
        let slot = self.slots.lock().get(&addr).cloned();
        if let Some(slot) = slot
            && let Ok(mut slot) = slot.try_lock()
            && slot
                .as_ref()
                .is_some_and(|(c, _)| c.stable_id() == conn.stable_id())
        {
            slot.take();
        }
        conn.close(0u32.into(), b"failed");
    }

    /// Closes and forgets the connections (other than `addr`'s) idle for [`API_IDLE`].
    fn close_idle(&self, addr: SocketAddr) {
        let mut slots = self.slots.lock();
        slots.retain(|a, slot| {
            if *a == addr {
                return true;
            }
            let Ok(mut s) = slot.try_lock() else {
                return true;
            };
            match s.as_ref() {
                Some((c, used)) if used.elapsed() < API_IDLE && c.close_reason().is_none() => true,
                _ => {
                    if let Some((c, _)) = s.take() {
                        c.close(0u32.into(), b"idle");
                    }
                    false
                }
            }
        });
    }
}

/// Makes one call to the peer endpoint at `addr` on its pooled connection, bounded by
/// `timeout`. A pooled connection found broken is replaced once: for any call when the
/// request certainly did not leave, for a `GET` (which changes nothing) in any case.
pub(super) async fn call(
    dialer: &Dialer,
    pool: &Pool,
    addr: SocketAddr,
    call: &ApiCall,
    timeout: Duration,
) -> Result<ApiReply, ApiCallError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (conn, pooled) = pool.get(dialer, addr, deadline).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match frame::request_once::<ApiCall, ApiReply>(&conn, call, MAX_REPLY, left).await {
            Ok(reply) => return Ok(reply),
            Err(e) => {
                pool.drop_conn(addr, &conn);
                let retry = pooled
                    && (matches!(e, RequestError::NotSent(_)) || call.method == "GET")
                    && tokio::time::Instant::now() < deadline;
                if !retry {
                    return Err(ApiCallError::Exchange(match e {
                        RequestError::NotSent(e) | RequestError::MaybeSent(e) => e,
                    }));
                }
            }
        }
    }
}

/// Who opened a call stream, as the connection's handshake established it.
pub(super) struct Caller {
    /// The peer's address.
    pub(super) remote: SocketAddr,
    /// The common name of its certificate (checked against the cluster CA), if usable.
    pub(super) certified: Option<Arc<str>>,
}

/// Serves one incoming call stream: reads the call, checks that the name it states is the
/// one its certificate carries (403 otherwise), runs the handler, writes the reply. The
/// handler sees a `from` that the certificate vouches for.
pub(super) async fn serve(
    inbound: Arc<Inbound>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    caller: Caller,
) {
    let remote = caller.remote;
    // A slot is taken before the call is read, so that at most MAX_CONCURRENT calls (and
    // their bodies) are held in memory at once.
    let slot = tokio::time::timeout(READ_TIMEOUT, inbound.slots.clone().acquire_owned()).await;
    let reply = match (slot, inbound.handler.get().cloned()) {
        (Ok(Ok(_permit)), Some(handler)) => {
            let Some(call) = read_call(&mut recv, remote).await else {
                return;
            };
            debug!(from = ?call.from, method = ?call.method, "API call from a peer");
            if !certifies(caller.certified.as_deref(), &call.from) {
                metrics::counter!(m::PEER_API_REFUSED_TOTAL, "reason" => "certificate")
                    .increment(1);
                warn!(%remote, from = ?call.from, "API call whose stated node is not the certificate's; refused");
                forbidden("the caller's certificate does not name the node it says it is")
            } else {
                match tokio::time::timeout(SERVE_TIMEOUT, handler(call)).await {
                    Ok(reply) => reply,
                    Err(_) => unavailable("the call timed out on the called node"),
                }
            }
        }
        (_, None) => unavailable("this node's API is not ready"),
        _ => unavailable("too many API calls on the called node"),
    };
    if let Err(e) = frame::write_msg(&mut send, &reply).await {
        debug!(%remote, error = %e, "API reply not delivered");
        return;
    }
    let _ = send.finish();
    // Let the reply leave before the stream is dropped (the caller closes the connection).
    let _ = tokio::time::timeout(READ_TIMEOUT, send.stopped()).await;
}

/// Reads one call within [`READ_TIMEOUT`]; a malformed or late one is counted and dropped.
async fn read_call(recv: &mut quinn::RecvStream, remote: SocketAddr) -> Option<ApiCall> {
    let read = tokio::time::timeout(READ_TIMEOUT, frame::read_msg::<ApiCall>(recv, MAX_CALL));
    match read.await {
        Ok(Ok(call)) => call,
        Ok(Err(
            e @ (FrameError::Decode(..) | FrameError::TooLarge { .. } | FrameError::Truncated),
        )) => {
            malformed(recv, remote, e.label());
            None
        }
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "API call stream ended");
            None
        }
        Err(_) => {
            malformed(recv, remote, "api_call_timeout");
            None
        }
    }
}

/// Whether a certificate whose common name is `certified` may speak for node `from`: a
/// node's certificate is issued under its name made file-safe
/// (`crate::core_handle::cert_name`).
fn certifies(certified: Option<&str>, from: &str) -> bool {
    certified.is_some_and(|cn| !from.is_empty() && crate::core_handle::cert_name(from) == cn)
}

/// A 503 reply in the API's error shape.
fn unavailable(message: &str) -> ApiReply {
    reply(503, "SERVICE_UNAVAILABLE", message)
}

/// A 403 reply in the API's error shape (a call refused before it ran).
pub fn forbidden(message: &str) -> ApiReply {
    reply(403, "FORBIDDEN", message)
}

/// A reply in the API's error shape.
fn reply(status: u32, code: &str, message: &str) -> ApiReply {
    let body = serde_json::json!({"code": code, "message": message});
    ApiReply {
        status,
        body: body.to_string().into_bytes().into(),
        content_type: "application/json".into(),
    }
}

/// Counts and drops a malformed call stream.
fn malformed(recv: &mut quinn::RecvStream, remote: SocketAddr, reason: &'static str) {
    metrics::counter!(m::PEER_MALFORMED_TOTAL, "reason" => reason).increment(1);
    let _ = recv.stop(STOP_MALFORMED.into());
    warn!(%remote, reason, "malformed API call from peer; stream dropped");
}
