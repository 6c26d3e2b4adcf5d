//! The end of a connection and of a session: the will message (with its delay), the session
//! expiry timer, and ending a session (subscriptions, routes and registry row removed).
//!
//! Timers are tasks that capture the slot's `epoch`; a reconnect bumps it, so a timer that
//! fires after the client came back does nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmq_shared::codec::{ProtocolVersion, ReasonCode, Will};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{SubscriptionFilter, parse_subscription};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::debug;

use super::{Conn, Exit};
use crate::authz::{self, AuthzClient};
use crate::cluster;
use crate::ctx::Ctx;
use crate::message::Message;
use crate::publish;
use crate::sessions::ConnId;
use crate::sessions::{Leaving, SessionSlot};
use crate::sys::events;

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Closes the socket and settles the will and the session according to why it ended.
    pub(super) async fn close(mut self, exit: Exit) {
        // Bounded: shutting down flushes, and a client that stopped reading would hold it.
        let _ = tokio::time::timeout(self.ctx.close_linger(), self.writer.shutdown()).await;
        // Release the buffers before the bookkeeping below waits for the core: in a
        // reconnect storm thousands of closing tasks wait at once. A client that closed (or
        // said DISCONNECT) has its socket dropped at once too (each kept socket counts
        // against the open-file limit); one that we closed gets a bounded lingering close
        // beside the bookkeeping, so that it can read why.
        let lingers = match exit {
            Exit::ServerClose(_) | Exit::Kicked { .. } | Exit::Banned | Exit::Shutdown => {
                Some(self.ctx.close_linger())
            }
            Exit::ClientDisconnect(_) | Exit::Dropped => None,
        };
        let (closing, will, reader, writer) = self.into_closing();
        match lingers {
            // Beside the bookkeeping, in this task: the lingering socket still counts as a
            // connection (`max_connections`, the gauge) until it is dropped.
            Some(max) => {
                let ((), ()) =
                    tokio::join!(linger(reader, writer, max), closing.settle(exit, will));
            }
            None => {
                drop((reader, writer));
                closing.settle(exit, will).await;
            }
        }
    }

    /// Splits off what settling needs and the socket halves; the buffers are dropped.
    #[allow(clippy::type_complexity)]
    fn into_closing(self) -> (Closing, Option<Will>, ReadHalf<S>, WriteHalf<S>) {
        let Conn {
            ctx,
            id,
            slot,
            version,
            client_id,
            authz,
            will,
            reader,
            writer,
            ..
        } = self;
        let closing = Closing {
            ctx,
            id,
            slot,
            version,
            client_id,
            authz,
        };
        (closing, will.map(|w| *w), reader, writer)
    }
}

/// What settling a closed connection needs (the socket already released).
struct Closing {
    ctx: Arc<Ctx>,
    id: ConnId,
    slot: Arc<SessionSlot>,
    /// The protocol version of the CONNECT (the `disconnected` event carries it).
    version: ProtocolVersion,
    client_id: Arc<str>,
    /// The client as authorization sees it (its will is checked with its rights).
    authz: Arc<AuthzClient>,
}

/// Who a `$SYS` client event is about.
pub(super) fn event_client(
    authz: &AuthzClient,
    version: ProtocolVersion,
) -> events::ClientInfo<'_> {
    events::ClientInfo {
        client_id: &authz.info.client_id,
        username: authz.info.username.as_deref(),
        peer: authz.info.peerhost,
        version,
    }
}

/// The `reason` of the `disconnected` event: EMQX's names (`normal`, `takenover`,
/// `discarded`, `kicked` (by an operator), `keepalive_timeout`, `tcp_closed` for a socket
/// closed without DISCONNECT, ...).
fn disconnect_reason(exit: Exit) -> Cow<'static, str> {
    match exit {
        Exit::ClientDisconnect(rc) | Exit::ServerClose(rc) => events::reason_name(rc),
        Exit::Dropped => "tcp_closed".into(),
        Exit::Kicked {
            reason: ReasonCode::AdministrativeAction,
            ..
        } => "kicked".into(),
        Exit::Kicked {
            session_ends: false,
            ..
        } => "takenover".into(),
        Exit::Kicked {
            session_ends: true, ..
        } => "discarded".into(),
        Exit::Banned => "banned".into(),
        Exit::Shutdown => "shutdown".into(),
    }
}

impl Closing {
    async fn settle(self, exit: Exit, will: Option<Will>) {
        let client = event_client(&self.authz, self.version);
        events::client_disconnected(&self.ctx, &client, &disconnect_reason(exit));
        if exit == Exit::Shutdown {
            // The node is stopping: in-memory state (queue, in-flight) goes with it, but a
            // persistent session's subscriptions stay in the tables. Record the disconnect so
            // that its expiry clock runs from now (a restart then restores it, or not, by
            // expiry); a clean session's row is purged when the node comes back.
            let (owner, expiry, generation) = {
                let inner = self.slot.inner.lock();
                (inner.owner, inner.expiry_secs, inner.generation)
            };
            if owner == Some(self.id) && expiry > 0 {
                cluster::disconnected(&self.ctx.tables, &self.client_id, generation, expiry).await;
            }
            return;
        }
        // An operator's kick: this connection still owns the session, which ends here.
        let operator_kick = exit.is_operator_kick();
        if let Exit::Kicked { session_ends, .. } = exit
            && !operator_kick
        {
            // The new owner has the session; only the will is ours to settle.
            if let Some(w) = will
                && (session_ends || will_delay(&w) == 0)
            {
                publish_will(&self.ctx, w, &self.authz).await;
            }
            return;
        }
        let (epoch, expiry, generation) = {
            let mut inner = self.slot.inner.lock();
            if inner.owner != Some(self.id) {
                return;
            }
            inner.owner = None;
            inner.control = None;
            inner.epoch += 1;
            inner.disconnected_at_ms = crate::api::now_ms();
            (inner.epoch, inner.expiry_secs, inner.generation)
        };
        self.slot.mailbox.set_online(false);
        // A banned client's session ends with its connection (nothing left to resume), and
        // its will is dropped: a ban is no moment for one last message from that client. A
        // kicked client's session ends too, but its will goes out at once (as EMQX's kick).
        let ends = exit == Exit::Banned || operator_kick;
        let send_will =
            exit != Exit::Banned && !matches!(exit, Exit::ClientDisconnect(ReasonCode::Success));
        if let Some(w) = will.filter(|_| send_will) {
            let delay = if ends { 0 } else { will_delay(&w).min(expiry) };
            if delay == 0 {
                publish_will(&self.ctx, w, &self.authz).await;
            } else {
                spawn_will_timer(&self.ctx, &self.slot, epoch, delay, w, self.authz.clone());
            }
        }
        if expiry == 0 || ends {
            end_session(&self.ctx, &self.slot, true).await;
        } else {
            cluster::disconnected(&self.ctx.tables, &self.client_id, generation, expiry).await;
            spawn_expiry_timer(&self.ctx, &self.slot, epoch, expiry);
        }
    }
}

/// A lingering close: the write side is already shut down (our last packet and a FIN are on
/// their way); reads and discards what the client still sends until it closes, or `max`
/// passes, then drops the socket. Closing with unread input would make the kernel answer
/// with a reset, and a client still sending (PUBRELs, PINGREQs) could lose the DISCONNECT
/// or CONNACK that says why it was closed. Bounded in time and in memory (one small
/// scratch buffer).
pub(crate) async fn linger<R: AsyncRead + Unpin, W>(mut reader: R, writer: W, max: Duration) {
    if !max.is_zero() {
        let mut scratch = [0u8; 512];
        let drain = async {
            while let Ok(n) = reader.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(max, drain).await;
    }
    drop(writer);
}

fn will_delay(w: &Will) -> u32 {
    w.properties.will_delay_interval.unwrap_or(0)
}

/// Publishes a will message through the normal path (authorization with the publisher's
/// rights, its QoS and retain flag; retained; routing).
pub(crate) async fn publish_will(ctx: &Arc<Ctx>, w: Will, client: &AuthzClient) {
    if !authz::check_will(ctx, client, &w).await {
        return;
    }
    let client_id = &*client.info.client_id;
    metrics::counter!(m::WILL_MESSAGES_SENT_TOTAL).increment(1);
    let mut msg = Message::new(
        Instant::now(),
        w.topic,
        w.payload,
        w.qos,
        w.retain,
        w.properties,
    );
    msg.properties.will_delay_interval = None;
    msg.from_client = Some(Arc::from(client_id));
    publish::publish(ctx, Arc::new(msg)).await;
}

fn spawn_will_timer(
    ctx: &Arc<Ctx>,
    slot: &Arc<SessionSlot>,
    epoch: u64,
    delay: u32,
    w: Will,
    client: Arc<AuthzClient>,
) {
    let (ctx, slot) = (ctx.clone(), slot.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(u64::from(delay))) => {}
        }
        let still_away = {
            let inner = slot.inner.lock();
            // A session that moved to another node has its client back: no will.
            (inner.epoch == epoch || inner.ended) && inner.leaving == Leaving::No
        };
        if still_away {
            publish_will(&ctx, w, &client).await;
        }
    });
}

pub(super) fn spawn_expiry_timer(ctx: &Arc<Ctx>, slot: &Arc<SessionSlot>, epoch: u64, expiry: u32) {
    let (ctx, slot) = (ctx.clone(), slot.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(u64::from(expiry))) => {}
        }
        let expired = slot.inner.lock().epoch == epoch;
        if expired {
            metrics::counter!(m::SESSIONS_EXPIRED_TOTAL).increment(1);
            end_session(&ctx, &slot, true).await;
        }
    });
}

/// Ends a session: no connection may own it afterwards; its subscriptions leave the router
/// (and the `routes` rows their filters no longer need), its queue is dropped (counted) and,
/// when `remove_registry`, its registry row and persistent subscriptions are deleted.
pub(crate) async fn end_session(ctx: &Arc<Ctx>, slot: &Arc<SessionSlot>, remove_registry: bool) {
    end_session_with(ctx, slot, remove_registry, false).await;
}

/// Ends the local copy of a session whose client id another node has claimed: local router
/// entries and this node's `routes` rows go, but the `shared` and `subscriptions` rows and
/// the registry row now belong to the new owner and are left alone.
pub(crate) async fn end_session_moved(ctx: &Arc<Ctx>, slot: &Arc<SessionSlot>) {
    end_session_with(ctx, slot, false, true).await;
}

async fn end_session_with(
    ctx: &Arc<Ctx>,
    slot: &Arc<SessionSlot>,
    remove_registry: bool,
    moved: bool,
) {
    let (subs, generation) = {
        let mut inner = slot.inner.lock();
        if inner.ended {
            return;
        }
        inner.ended = true;
        inner.owner = None;
        inner.control = None;
        inner.epoch += 1;
        let subs: Vec<_> = inner.session.subscriptions.drain().collect();
        (subs, inner.generation)
    };
    // A session that ended by itself (closed with expiry 0, or expired) leaves its shared
    // groups only if its client has not come back meanwhile: a reconnect elsewhere may have
    // claimed and joined again before this commits. A takeover here (clean start) has
    // claimed already and is not subscribed yet: its removal is unconditional.
    let leave_generation = if remove_registry { generation } else { 0 };
    let mut ops = Vec::new();
    for (filter, opts) in subs {
        match parse_subscription(&filter) {
            Ok(SubscriptionFilter::Plain(f)) => {
                // The last local subscriber queues a `RouteRemove` (route writer).
                ctx.local.router.unsubscribe(slot.id, f, opts);
            }
            Ok(SubscriptionFilter::Shared { group, filter: f }) => {
                ctx.local.router.unsubscribe_shared(slot.id, group, f);
                if !moved {
                    ops.push(cluster::shared_remove(
                        group,
                        f,
                        &slot.client_id,
                        leave_generation,
                    ));
                }
            }
            Err(_) => {}
        }
    }
    ctx.local.router.unregister(slot.id);
    ctx.local.sessions.remove_if_current(slot);
    let dropped = slot.mailbox.clear();
    slot.mailbox.release();
    if dropped > 0 {
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "session_ended")
            .increment(dropped as u64);
    }
    if remove_registry {
        ops.push(cluster::registry_remove(&slot.client_id, generation));
    }
    cluster::transact_chunked(&ctx.tables, ops).await;
    metrics::gauge!(m::SESSIONS).set(ctx.local.sessions.len() as f64);
    metrics::gauge!(m::SUBSCRIPTIONS).set(ctx.local.router.subscription_count() as f64);
    debug!(client_id = %slot.client_id, "session ended");
}
