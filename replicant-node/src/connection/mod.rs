//! One task per MQTT connection (TCP, TLS or WebSocket, from any listener): reads and decodes packets, drives the
//! session state machine under its slot lock, routes what the client publishes, takes from
//! the session's mailbox what the session can send at once, and writes everything queued for
//! the client in one `write` per wake-up.
//!
//! The task owns the socket, the keep-alive timer and the control channel; protocol decisions
//! live in [`crate::session`]. It never blocks on another client: a slow subscriber is seen as
//! a full mailbox (dropped and counted), a slow socket as a write timeout. One write carries
//! at most about `mqtt.max_write_buffer_bytes`: what is left waits in the mailbox, where QoS
//! 0 beyond that budget is dropped while the write is in progress (`crate::mailbox`).

mod adopt;
mod close;
mod connect;
mod enhanced_auth;
mod exit;
mod listener_rules;
pub mod moved;
mod packets;
mod refuse;
mod replay;
mod restore;
mod setup;
pub(crate) mod sub_apply;
mod subscribe;
mod table_writes;
mod traced;
pub(crate) mod unsubscribe;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use meshmq_shared::codec::{self, Decoder, Disconnect, Packet, ProtocolVersion, ReasonCode, Will};
use meshmq_shared::metrics as m;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tracing::{Instrument, debug, debug_span};

use crate::ctx::Ctx;
use crate::listeners::ConnMeta;
use crate::message::Delivery;
use crate::session::Outgoing;
use crate::sessions::{ConnId, Control, SessionSlot};

pub(crate) use adopt::{Adopted, adopt};
use close::linger;
pub(crate) use close::{end_session, end_session_moved};
use exit::Exit;

/// Most deliveries taken from the mailbox per wake-up (keeps one busy subscriber from
/// starving its own socket reads; the write budget may stop it sooner).
const DRAIN_BATCH: usize = 512;
/// Smallest room made in the read buffer before a read.
const READ_MIN: usize = 256;
/// Largest room made in the read buffer before a read (a busy publisher's reads).
const READ_MAX: usize = 64 * 1024;
/// Write buffer capacity a connection keeps between writes whatever their size.
const WBUF_KEEP: usize = 16 * 1024;
/// Longest a publisher waits for a congested subscriber queue before reading on.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(50);

/// Starts the task for an admitted connection (`meta` holds its listener's and the node's
/// connection slots, released when the task ends). `peer` is the client's address (the one
/// a PROXY header or a trusted proxy's forwarding header named, if any).
pub fn spawn<S>(ctx: Arc<Ctx>, io: S, peer: SocketAddr, meta: ConnMeta)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = meta.listener().transport();
    let span = debug_span!("conn", %peer, transport, client_id = tracing::field::Empty);
    let fut = async move {
        let mut meta = meta;
        ctx.admission.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(m::CONNECTIONS, "transport" => transport).increment(1.0);
        run(&ctx, io, peer, &mut meta).await;
        metrics::gauge!(m::CONNECTIONS, "transport" => transport).decrement(1.0);
        ctx.admission.connections.fetch_sub(1, Ordering::Relaxed);
        drop(meta);
    }
    .instrument(span);
    tokio::spawn(fut);
}

/// A connection after a successful CONNECT.
struct Conn<S> {
    ctx: Arc<Ctx>,
    id: ConnId,
    slot: Arc<SessionSlot>,
    version: ProtocolVersion,
    client_id: Arc<str>,
    /// Client id, username, address, superuser, attached rules: what authorization sees.
    authz: Arc<crate::authz::AuthzClient>,
    /// This connection's cache of authorization decisions (`None`: caching is off).
    authz_cache: Option<crate::authz::Cache>,
    /// Boxed: most clients have none, and a `Will` (with its properties) is ~350 bytes.
    will: Option<Box<Will>>,
    /// Effective keep-alive (0 = none); the connection is closed after 1.5x of silence.
    keep_alive: u16,
    /// When the client's credentials expire (a JWT's `exp`, `disconnect_after_expire`):
    /// the connection is closed then with 0x87 Not authorized (its will is sent).
    auth_expires: Option<tokio::time::Instant>,
    /// Session expiry requested in CONNECT was 0 (then DISCONNECT may not raise it).
    connect_expiry_zero: bool,
    /// The client wants reason strings and user properties on errors (5.0 default: yes).
    problem_info: bool,
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    decoder: Decoder,
    rbuf: BytesMut,
    /// Bytes the last read returned (sizes the next one).
    last_read: usize,
    wbuf: BytesMut,
    /// Fires once: the session was taken over (or its sender dropped: the same).
    control: oneshot::Receiver<Control>,
    out: Vec<Outgoing>,
    deliveries: Vec<Delivery>,
    /// What the last routed publish found congested (publisher back-pressure).
    congested: Option<crate::publish::Backpressure>,
    /// Messages written since the last metrics flush.
    delivered: u64,
    /// The last take from the mailbox stopped at its count or byte limit: take again once
    /// the write is done.
    drain_more: bool,
    /// Sampled messages encoded into the write buffer: their delivery latency is recorded
    /// once the write succeeds ([`crate::delivery_latency`]). Empty, without capacity, for
    /// nearly every write.
    sampled: Vec<crate::delivery_latency::Sampled>,
    /// Retained replays of new subscriptions, fed to the session turn by turn.
    replays: replay::Replays,
    /// MQTT 5 enhanced authentication (connected with an Authentication Method): boxed,
    /// most connections have none.
    enhanced: Option<Box<enhanced_auth::Enhanced>>,
    /// Keeps this connection in the index new bans are matched against, until it ends.
    _live: crate::banned::live::LiveGuard,
}

async fn run<S>(ctx: &Arc<Ctx>, io: S, peer: SocketAddr, meta: &mut ConnMeta)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    // CONNECT and close run table transactions (large futures): boxed, they cost memory only
    // while they run, not for the whole life of every idle connection's task.
    let Some(mut conn) = Box::pin(connect::accept(ctx, reader, writer, peer, meta)).await else {
        return;
    };
    tracing::Span::current().record("client_id", &*conn.client_id);
    let exit = conn.main_loop().await;
    debug!(?exit, "connection closing");
    conn.trace(&traced::disconnect_event(exit));
    metrics::counter!(m::DISCONNECTS_TOTAL, "reason" => exit.label()).increment(1);
    let client_id = conn.client_id.clone();
    Box::pin(conn.close(exit)).await;
    if exit != Exit::Shutdown {
        crate::banned::flapping::disconnected(ctx, &client_id);
    }
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn main_loop(&mut self) -> Exit {
        let mailbox = self.slot.mailbox.clone();
        let mut last_packet = Instant::now();
        loop {
            let ka_deadline = self.keepalive_deadline(last_packet);
            let rel_deadline = self
                .slot
                .inner
                .lock()
                .session
                .next_awaiting_rel_expiry()
                .map(tokio::time::Instant::from_std);
            self.size_read_buffer();
            let replay_turn = self.replay_wants_turn();
            let reauth_deadline = self.enhanced.as_ref().and_then(|e| e.deadline());
            let exit = tokio::select! {
                biased;
                _ = self.ctx.admission.shutdown.cancelled() => Some(Exit::Shutdown),
                // Polled only until it fires: the loop ends then.
                c = &mut self.control => match c {
                    Ok(Control::Kick { reason, session_ends }) => Some(Exit::Kicked { reason, session_ends }),
                    Ok(Control::Banned) => {
                        self.queue_disconnect(ReasonCode::AdministrativeAction);
                        Some(Exit::Banned)
                    }
                    // DISCONNECT 0x98 is queued below, as for every `Kicked`.
                    Ok(Control::AdminKick) => Some(Exit::Kicked { reason: ReasonCode::AdministrativeAction, session_ends: true }),
                    Ok(Control::Evict { server_reference }) => {
                        self.queue_disconnect_to(ReasonCode::UseAnotherServer, server_reference);
                        Some(Exit::ServerClose(ReasonCode::UseAnotherServer))
                    }
                    Err(_) => Some(Exit::Kicked { reason: ReasonCode::SessionTakenOver, session_ends: false }),
                },
                r = self.reader.read_buf(&mut self.rbuf) => match r {
                    Ok(0) | Err(_) => Some(Exit::Dropped),
                    Ok(n) => {
                        self.last_read = n;
                        metrics::counter!(m::BYTES_RECEIVED_TOTAL).increment(n as u64);
                        // Boxed (one allocation per read, not per packet): packet handling
                        // is a large future that idle connections should not carry.
                        let (decoded, exit) = Box::pin(self.on_readable()).await;
                        // Keep-alive counts complete control packets, not bytes
                        // (MQTT-3.1.2-24): a client dripping a byte at a time cannot hold
                        // its connection and a partial packet's buffer forever.
                        if decoded {
                            last_packet = Instant::now();
                        }
                        exit
                    }
                },
                _ = mailbox.ready.notified() => { self.drain_mailbox(); None }
                // One timer for every deadline (keep-alive, QoS 2 release, re-authentication,
                // credentials' expiry): an idle connection's task carries one.
                _ = sleep_until_opt(earliest(earliest(ka_deadline, rel_deadline), earliest(reauth_deadline, self.auth_expires))) => {
                    if self.auth_expires.is_some_and(|d| d <= tokio::time::Instant::now()) {
                        metrics::counter!(m::AUTHN_EXPIRED_TOTAL).increment(1);
                        self.queue_disconnect(ReasonCode::NotAuthorized);
                        Some(Exit::ServerClose(ReasonCode::NotAuthorized))
                    } else if ka_deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                        metrics::counter!(m::KEEPALIVE_TIMEOUTS_TOTAL).increment(1);
                        self.queue_disconnect(ReasonCode::KeepAliveTimeout);
                        Some(Exit::ServerClose(ReasonCode::KeepAliveTimeout))
                    } else if let Some(exit) = self.reauth_expired() {
                        Some(exit)
                    } else {
                        self.with_session(|s, now, _| s.purge_awaiting_rel(now));
                        None
                    }
                }
                // Last: a retained replay with room to go on takes a turn when nothing else
                // is ready (it also runs after any other wake-up, below).
                _ = std::future::ready(()), if replay_turn => None,
            };
            if let Some(e) = exit {
                if let Exit::Kicked { reason, .. } = e {
                    self.queue_disconnect(reason);
                }
                if e == Exit::Shutdown {
                    self.queue_disconnect(ReasonCode::ServerShuttingDown);
                }
                let _ = self.flush().await;
                return e;
            }
            self.replay_step();
            if self.flush().await.is_err() {
                return Exit::Dropped;
            }
            if std::mem::take(&mut self.drain_more) {
                mailbox.ready.notify_one();
            }
            self.backpressure().await;
        }
    }

    /// Sizes the read buffer to the traffic: a read that filled the room it had doubles the
    /// room for the next one (up to [`READ_MAX`]); an idle connection whose buffer is empty
    /// gives a large buffer (and its scratch vectors) back, so idle connections cost a few
    /// hundred bytes, not 16 KiB.
    fn size_read_buffer(&mut self) {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let want = if self.last_read >= spare.max(READ_MIN) {
            (spare * 2).clamp(READ_MIN, READ_MAX)
        } else {
            READ_MIN
        };
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * want {
            self.rbuf = BytesMut::new();
        }
        if want == READ_MIN {
            // Not reading in bulk: give back the scratch vectors too (an `Outgoing` is
            // ~400 bytes; one PINGRESP would otherwise keep four of them for good).
            if self.out.is_empty() && self.out.capacity() > 0 {
                self.out = Vec::new();
            }
            if self.deliveries.is_empty() && self.deliveries.capacity() > 0 {
                self.deliveries = Vec::new();
            }
        }
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
        }
        self.last_read = 0;
    }

    fn keepalive_deadline(&self, last: Instant) -> Option<tokio::time::Instant> {
        (self.keep_alive > 0).then(|| {
            let grace = Duration::from_millis(u64::from(self.keep_alive) * 1500);
            tokio::time::Instant::from_std(last + grace)
        })
    }

    /// Decodes every complete packet in the read buffer and handles it. Returns whether at
    /// least one complete packet was decoded, and the exit if one ends the connection.
    async fn on_readable(&mut self) -> (bool, Option<Exit>) {
        let mut decoded = false;
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(packet)) => {
                    decoded = true;
                    metrics::counter!(m::PACKETS_RECEIVED_TOTAL, "type" => packet.name())
                        .increment(1);
                    if let Some(exit) = self.on_packet(packet).await {
                        return (decoded, Some(exit));
                    }
                }
                Ok(None) => return (decoded, None),
                Err(e) => {
                    debug!(error = %e, "bad packet");
                    metrics::counter!(m::MALFORMED_PACKETS_TOTAL, "reason" => e.label())
                        .increment(1);
                    self.queue_disconnect(e.reason_code());
                    return (decoded, Some(Exit::ServerClose(e.reason_code())));
                }
            }
        }
    }

    /// Runs `f` on the session if this connection still owns it; `None` when taken over.
    /// Then takes from the mailbox what the session can now send (an ack opens the window),
    /// fits the session's pending queue into the bound it shares with the mailbox and
    /// reports it there.
    fn with_session<R>(
        &mut self,
        f: impl FnOnce(&mut crate::session::Session, Instant, &mut Vec<Outgoing>) -> R,
    ) -> Option<R> {
        let now = Instant::now();
        let write_room = self
            .ctx
            .config
            .mqtt
            .max_write_buffer_bytes
            .saturating_sub(self.wbuf.len());
        let mailbox = &self.slot.mailbox;
        let mut inner = self.slot.inner.lock();
        if inner.owner != Some(self.id) {
            return None;
        }
        let s = &mut inner.session;
        let r = f(s, now, &mut self.out);
        let scratch = &mut self.deliveries;
        self.drain_more = take_sendable(mailbox, s, now, &mut self.out, scratch, write_room);
        let (queued, queued_bytes) = mailbox.usage();
        s.fit_queue(queued, queued_bytes);
        let drops = s.take_drops();
        mailbox.set_backlog(s.pending_len(), s.pending_bytes());
        drop(inner);
        let dropped = drops.queue_full + drops.expired + drops.too_large;
        if dropped > 0 {
            self.slot
                .stats
                .mqueue_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        self.trace_drops(&drops);
        record_drops(drops);
        self.encode_out();
        Some(r)
    }

    /// Takes what the session can send from the mailbox (see [`Conn::with_session`]). Under
    /// the slot lock, only while this connection owns the session, so a takeover never
    /// strands deliveries in a connection that is going away.
    fn drain_mailbox(&mut self) {
        self.with_session(|_, _, _| ());
    }

    /// Encodes every pending [`Outgoing`] into the write buffer.
    fn encode_out(&mut self) {
        let now = Instant::now();
        for o in self.out.drain(..) {
            match o {
                Outgoing::Packet(p) => {
                    metrics::counter!(m::PACKETS_SENT_TOTAL, "type" => p.name()).increment(1);
                    if let Err(e) = codec::encode(&p, self.version, &mut self.wbuf) {
                        debug!(error = %e, packet = p.name(), "could not encode");
                    }
                }
                Outgoing::Publish { msg, variant } => {
                    self.delivered += 1;
                    if self.ctx.trace.active() {
                        let e = crate::trace::Event::PublishOut {
                            topic: &msg.topic,
                            qos: traced::qos_num(variant.qos),
                            payload: &msg.payload,
                            retain: variant.retain,
                        };
                        traced::record(&self.ctx, &self.client_id, self.authz.info.peerhost, &e);
                    }
                    if let Some(s) = msg.sampled.filter(|_| !variant.dup) {
                        self.sampled.push(s);
                    }
                    if variant.is_plain_qos0()
                        && let Some(bytes) = msg.cached_qos0(self.version)
                    {
                        self.wbuf.extend_from_slice(&bytes);
                        continue;
                    }
                    let p = Packet::Publish(msg.to_publish(now, &variant));
                    if let Err(e) = codec::encode(&p, self.version, &mut self.wbuf) {
                        debug!(error = %e, "could not encode publish");
                    }
                }
            }
        }
    }

    /// Queues a DISCONNECT with `reason` (5.0 only; 3.1.1 just closes).
    fn queue_disconnect(&mut self, reason: ReasonCode) {
        self.queue_disconnect_to(reason, None);
    }

    /// As [`queue_disconnect`](Self::queue_disconnect), with an MQTT 5 Server Reference.
    fn queue_disconnect_to(&mut self, reason: ReasonCode, server_reference: Option<Arc<str>>) {
        if self.version.is_v5() {
            let mut d = Disconnect::new(reason);
            d.properties.server_reference = server_reference.map(|r| r.to_string());
            self.out.push(Outgoing::Packet(Packet::Disconnect(d)));
            self.encode_out();
        }
    }

    /// Writes the write buffer in one go (bounded by `listeners.send_timeout_ms`).
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.delivered > 0 {
            metrics::counter!(m::MESSAGES_DELIVERED_TOTAL).increment(self.delivered);
            self.slot
                .stats
                .send_msg
                .fetch_add(self.delivered, Ordering::Relaxed);
            self.delivered = 0;
        }
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let n = self.wbuf.len();
        // What waits for the socket counts against QoS 0 deliveries and the node's budget
        // until it is written. The flush is inside the bound too: a WebSocket sink stays
        // pending while the client's window is closed, and an unbounded flush would hold
        // the task forever.
        self.slot.mailbox.set_writing(n);
        let write = async {
            self.writer.write_all(&self.wbuf).await?;
            self.writer.flush().await
        };
        let r = tokio::time::timeout(self.ctx.send_timeout(), write).await;
        self.slot.mailbox.set_writing(0);
        self.wbuf.clear();
        if self.wbuf.capacity() > (2 * n).max(WBUF_KEEP) {
            // A burst's buffer is given back at the next smaller write (a PINGRESP at
            // worst), so a quiet connection does not keep it.
            self.wbuf = BytesMut::new();
        }
        metrics::counter!(m::BYTES_SENT_TOTAL).increment(n as u64);
        self.observe_sampled(matches!(r, Ok(Ok(()))));
        match r {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }

    /// Records the delivery latency of the sampled messages just written (`written`: the
    /// write succeeded; otherwise they were not delivered and are forgotten).
    fn observe_sampled(&mut self, written: bool) {
        if self.sampled.is_empty() {
            return;
        }
        if written {
            let now = Instant::now();
            for s in &self.sampled {
                crate::delivery_latency::observe(s, now);
            }
        }
        self.sampled.clear();
        if self.sampled.capacity() > 64 {
            self.sampled = Vec::new();
        }
    }

    /// Publisher back-pressure: when a subscriber queue this publisher feeds is past its
    /// high-water mark, or a peer link it feeds is half full, stop reading from the
    /// publisher until it drains (bounded wait).
    ///
    /// Not while this client's own queue is congested: it must keep reading to acknowledge
    /// its own deliveries (a client publishing to itself, or two clients publishing to each
    /// other, would otherwise hold each other back).
    async fn backpressure(&mut self) {
        let Some(congested) = self.congested.take() else {
            return;
        };
        if self.slot.mailbox.is_congested() {
            return;
        }
        let on = match congested {
            crate::publish::Backpressure::Mailbox(mb) => {
                if !mb.wait_drained(BACKPRESSURE_WAIT).await {
                    return;
                }
                "subscriber_queue"
            }
            crate::publish::Backpressure::Peer(link) => {
                if !link.wait(BACKPRESSURE_WAIT).await {
                    return;
                }
                "peer_link"
            }
        };
        metrics::counter!(m::PUBLISH_BACKPRESSURE_TOTAL, "on" => on).increment(1);
    }
}

/// The earlier of two optional deadlines.
fn earliest(
    a: Option<tokio::time::Instant>,
    b: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Moves from `mailbox` into the session what it can send at once: in order, QoS 0 and as
/// many QoS 1/2 as its window has room for, at most [`DRAIN_BATCH`] and about `max_bytes`
/// (the room left in this write). What stays waits in the mailbox, under the session's
/// bound. True when it stopped at one of those limits (take again after the write).
fn take_sendable(
    mailbox: &crate::mailbox::Mailbox,
    s: &mut crate::session::Session,
    now: Instant,
    out: &mut Vec<Outgoing>,
    batch: &mut Vec<Delivery>,
    max_bytes: usize,
) -> bool {
    use crate::mailbox::TakeStop;
    let (mut taken, mut bytes) = (0, 0);
    loop {
        let stop = mailbox.take_admitted(
            DRAIN_BATCH - taken,
            max_bytes.saturating_sub(bytes),
            s.window_room(),
            batch,
        );
        taken += batch.len();
        for d in batch.drain(..) {
            bytes += d.msg.size();
            s.deliver(now, d, out);
        }
        match stop {
            TakeStop::Limit => return true,
            TakeStop::Empty => return false,
            // Deliveries dropped on the way (expired, too large for the client) left room.
            TakeStop::Window if s.window_room() > 0 && taken < DRAIN_BATCH => {}
            TakeStop::Window => return false,
        }
    }
}

/// Turns a session's drop counters into metrics.
pub(crate) fn record_drops(d: crate::session::Drops) {
    if d == crate::session::Drops::default() {
        return;
    }
    let c = |reason: &'static str, n: u64| {
        if n > 0 {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => reason).increment(n);
        }
    };
    c("queue_full", d.queue_full);
    c("expired", d.expired);
    c("too_large_for_client", d.too_large);
    c("awaiting_rel_full", d.awaiting_rel_full);
    if d.awaiting_rel_expired > 0 {
        metrics::counter!(m::AWAITING_REL_EXPIRED_TOTAL).increment(d.awaiting_rel_expired);
    }
}

/// A short, stable metric label for a reason code.
pub(crate) fn reason_label(r: ReasonCode) -> String {
    format!("0x{:02x}", r.as_u8())
}
