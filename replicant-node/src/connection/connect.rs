//! The CONNECT phase: read the first packet (with a deadline), validate it, claim the client
//! id in the registry, take over or discard an existing session (or rebuild one from the
//! tables through `restore`), answer CONNACK and attach the session to this connection.
//!
//! Refusals answer CONNACK with the reason (3.1.1: the closest return code) and close. A 5.0
//! CONNECT with an Authentication Method is authenticated by the AUTH exchange of
//! [`super::enhanced_auth`] instead of the password chain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use meshmq_shared::codec::{
    self, Connect, DecodeError, Decoder, Packet, Properties, ProtocolVersion, ReasonCode,
};
use meshmq_shared::metrics as m;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tracing::debug;

use super::enhanced_auth::{self, Outcome};

/// Longest a connection is given before its credentials' expiry closes it (a far-future
/// `exp` would overflow the timer).
const MAX_AUTH_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

use super::refuse::{refuse, refuse_undecodable, refuse_with, refused};
use super::setup::{Setup, connack, validate};
use super::{Conn, reason_label, traced};
use crate::authn::{Credentials, UserName, Verdict};
use crate::authz::AuthzClient;
use crate::cluster;
use crate::ctx::Ctx;
use crate::handover;
use crate::listeners::ConnMeta;
use crate::mailbox::Mailbox;
use crate::session::{ConnParams, Session};
use crate::sessions::{ConnInfo, Control, Leaving, SessionSlot, SlotInner};
use crate::trace::Event;
use meshmq_shared::auth::acl::ClientInfo;

/// Reads CONNECT and sets the connection up under its listener's rules (`meta`); `None`
/// when it was refused or the socket closed.
pub(super) async fn accept<S>(
    ctx: &Arc<Ctx>,
    mut reader: ReadHalf<S>,
    mut writer: WriteHalf<S>,
    peer: SocketAddr,
    meta: &mut ConnMeta,
) -> Option<Conn<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut decoder = Decoder::new(ctx.config.mqtt.max_packet_size);
    let mut rbuf = BytesMut::with_capacity(512);
    let timeout = Duration::from_secs(ctx.config.mqtt.connect_timeout.max(1));
    let first =
        tokio::time::timeout(timeout, read_first(&mut decoder, &mut reader, &mut rbuf)).await;
    let connect = match first {
        Err(_) => {
            // Nothing to tell a client that never finished its CONNECT: drop it at once.
            metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => "connect_timeout")
                .increment(1);
            return None;
        }
        Ok(Err(FirstError::Io)) => return None,
        Ok(Err(FirstError::Decode(e))) => {
            metrics::counter!(m::MALFORMED_PACKETS_TOTAL, "reason" => e.label()).increment(1);
            refuse_undecodable(&mut writer, &e).await;
            return refused(ctx, reader, writer).await;
        }
        Ok(Ok(c)) => c,
    };
    let mut connect = connect;
    let version = connect.protocol;
    // The listener's rules first: a client id or username from the certificate is what
    // bans, authentication and authorization see.
    let rules = match super::listener_rules::apply(meta, &mut connect) {
        Ok(rules) => rules,
        Err(code) => {
            refuse(&mut writer, version, code).await;
            return refused(ctx, reader, writer).await;
        }
    };
    if let Some(server_reference) = ctx.admission.evacuation.refusing() {
        // Evacuating: v5 gets 0x9C Use another server (+ Server Reference), 3.1.1 code 3.
        let mut p = Properties::default();
        if version.is_v5() {
            p.server_reference = server_reference.map(|r| r.to_string());
        }
        refuse_with(&mut writer, version, ReasonCode::UseAnotherServer, p).await;
        return refused(ctx, reader, writer).await;
    }
    let mut wbuf = BytesMut::new();
    let setup = match validate(ctx, &connect) {
        Ok(setup) => setup,
        Err(code) => {
            refuse(&mut writer, version, code).await;
            return refused(ctx, reader, writer).await;
        }
    };
    let ip = peer.ip();
    let connack_traced = |code: ReasonCode, present: bool| {
        let e = Event::Connack {
            reason: code.as_u8(),
            session_present: present,
        };
        traced::record(ctx, &setup.client_id, ip, &e);
    };
    traced::record(
        ctx,
        &setup.client_id,
        ip,
        &Event::Connect {
            // A token in the User Name is not a name: never written to a trace.
            username: connect
                .username
                .as_deref()
                .filter(|_| !ctx.authn.username_is_secret()),
            proto: traced::proto_label(version),
            keepalive: connect.keep_alive,
            clean_start: connect.clean_start,
        },
    );
    // Bans first (as EMQX): a banned client is refused before any password is checked.
    if let Some(kind) = crate::banned::check(
        ctx,
        &setup.client_id,
        connect.username.as_deref(),
        peer.ip(),
    ) {
        metrics::counter!(m::BANNED_REFUSED_TOTAL, "as" => crate::banned::as_label(kind))
            .increment(1);
        connack_traced(ReasonCode::Banned, false);
        refuse(&mut writer, version, ReasonCode::Banned).await;
        return refused(ctx, reader, writer).await;
    }
    // Authentication before the claim: a refused client never touches the registry (and
    // so never takes a session over).
    let creds = Credentials {
        client_id: &setup.client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        peerhost: peer.ip(),
        cert: rules.cert.as_deref(),
    };
    // Bounded like the CONNECT itself: a check queued behind slow hashes for longer than
    // `mqtt.connect_timeout` is answered 0x89 Server busy (3.1.1: 3), never held on.
    let mut username = connect.username.clone();
    let mut enhanced = None;
    let verdict = if let Some(method) = &connect.properties.authentication_method {
        // Bounded like the CONNECT: a client that stops in the middle is dropped.
        let io = (&mut reader, &mut writer);
        let exchange =
            enhanced_auth::at_connect(ctx, &connect, method, io, &mut decoder, &mut rbuf);
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                crate::authn::scram::count_failure("timeout");
                crate::authn::count_result(false, false);
                metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => "auth_timeout")
                    .increment(1);
                return None;
            }
            Ok(Outcome::Dropped) => return None,
            Ok(Outcome::Refused(code)) => Verdict::Refused(code),
            Ok(Outcome::Allowed(allowed)) => {
                // The SCRAM user is the client's identity (authorization by user name).
                username = Some(allowed.username);
                enhanced = Some((method.clone(), allowed.server_final));
                Verdict::Allowed {
                    superuser: allowed.superuser,
                    acl: None,
                    expires: None,
                    username: UserName::AsSent,
                }
            }
        }
    } else if !rules.authenticate {
        // `enable_authn = false` on this listener: no authenticator is asked.
        Verdict::Allowed {
            superuser: false,
            acl: None,
            expires: None,
            username: UserName::AsSent,
        }
    } else {
        tokio::time::timeout(timeout, ctx.authn.authenticate(&ctx.tables, creds))
            .await
            .unwrap_or_else(|_| {
                metrics::counter!(m::AUTHN_OVERLOAD_TOTAL).increment(1);
                Verdict::Refused(ReasonCode::ServerBusy)
            })
    };
    // Anonymous: no authenticator was asked (none configured, or not on this listener).
    let anonymous = enhanced.is_none() && (!rules.authenticate || !ctx.authn.is_enabled());
    crate::authn::count_result(matches!(verdict, Verdict::Allowed { .. }), anonymous);
    let (named, superuser, attached, auth_expires) = match verdict {
        Verdict::Refused(code) => {
            connack_traced(code, false);
            refuse(&mut writer, version, code).await;
            return refused(ctx, reader, writer).await;
        }
        // A JWT with `disconnect_after_expire`: the connection closes at its `exp`; a JWT
        // or HTTP answer may carry the client's own rules.
        Verdict::Allowed {
            superuser,
            acl,
            expires,
            username: named,
        } => (
            named,
            superuser,
            acl.map(|a| crate::authz::attached_rules(&a))
                .unwrap_or_default(),
            expires.map(|at| {
                let left = at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                tokio::time::Instant::now() + left.min(MAX_AUTH_LIFETIME)
            }),
        ),
    };
    // A token read from the User Name is replaced by the name its claims give (or none).
    match named {
        UserName::Replaced(name) => username = name,
        // A JWT in the User Name let in by another way (a listener without authentication,
        // or a later authenticator while the JWT one had no keys) is still a credential.
        // (Not a SCRAM exchange's user: re-authentication checks that name.)
        UserName::AsSent
            if enhanced.is_none()
                && ctx.authn.username_is_secret()
                && username
                    .as_deref()
                    .is_some_and(|u| jsonwebtoken::decode_header(u).is_ok()) =>
        {
            username = None;
        }
        UserName::AsSent => {}
    }
    // The exchange or the token named the user: its bans hold too.
    if username != connect.username
        && let Some(kind) =
            crate::banned::check(ctx, &setup.client_id, username.as_deref(), peer.ip())
    {
        metrics::counter!(m::BANNED_REFUSED_TOTAL, "as" => crate::banned::as_label(kind))
            .increment(1);
        connack_traced(ReasonCode::Banned, false);
        refuse(&mut writer, version, ReasonCode::Banned).await;
        return refused(ctx, reader, writer).await;
    }
    let (tx, control) = oneshot::channel();
    let id = ctx.next_id();
    let Some((slot, session_present)) = claim(ctx, &connect, &setup, (id, ip), tx).await else {
        // The registry claim did not commit: without it this connection could not be the
        // one session of its client id cluster-wide. 5.0: 0x88 Server unavailable;
        // 3.1.1: return code 3 (the codec's mapping).
        connack_traced(ReasonCode::ServerUnavailable, false);
        refuse(&mut writer, version, ReasonCode::ServerUnavailable).await;
        return refused(ctx, reader, writer).await;
    };
    // Indexed for new bans from now on; a ban applied since the check above is caught here
    // (the connection then closes right after its CONNACK, through its control channel).
    // The user name is the authenticated one (a SCRAM client may have sent none).
    let live = ctx
        .banned
        .live
        .insert(id, setup.client_id.clone(), username.as_deref(), peer.ip());
    if crate::banned::check(ctx, &setup.client_id, username.as_deref(), peer.ip()).is_some() {
        crate::banned::live::kick(ctx, id, &setup.client_id);
    }
    slot.inner.lock().conn_info = Some(Arc::new(ConnInfo {
        username: username.as_deref().map(Arc::from),
        peer,
        proto_ver: version.level(),
        keepalive: setup.keep_alive,
        clean_start: connect.clean_start,
        connected_at_ms: crate::api::now_ms(),
        listener: Arc::from(meta.listener().id.as_str()),
    }));
    let mut connack = connack(ctx, &connect, &setup, session_present);
    if let Some((method, server_final)) = &enhanced {
        connack.properties.authentication_method = Some(method.clone());
        connack.properties.authentication_data = Some(server_final.clone());
    }
    metrics::counter!(m::CONNACK_TOTAL, "reason" => reason_label(ReasonCode::Success)).increment(1);
    connack_traced(ReasonCode::Success, session_present);
    if codec::encode(&Packet::ConnAck(connack), version, &mut wbuf).is_err() {
        return None;
    }
    let clean_start = connect.clean_start;
    let Connect {
        client_id: _,
        username: _,
        will,
        keep_alive: _,
        properties,
        ..
    } = *connect;
    let authz = AuthzClient {
        info: ClientInfo {
            client_id: setup.client_id.clone(),
            username: username.map(Arc::from),
            peerhost: peer.ip(),
            superuser,
        },
        attached,
        // Kept for the connection's life only where an HTTP source may ask for it.
        cert: rules.cert.filter(|_| ctx.authz.has_async_sources()),
    };
    let mut conn = Conn {
        ctx: ctx.clone(),
        id,
        slot,
        version,
        client_id: setup.client_id.clone(),
        authz: Arc::new(authz),
        authz_cache: ctx.authz.new_cache(),
        will: will.map(Box::new),
        keep_alive: setup.keep_alive,
        auth_expires,
        connect_expiry_zero: setup.expiry_secs == 0,
        problem_info: properties.request_problem_information != Some(0),
        reader,
        writer,
        decoder,
        rbuf,
        last_read: 0,
        wbuf,
        control,
        out: Vec::new(),
        deliveries: Vec::new(),
        congested: None,
        delivered: 0,
        drain_more: false,
        sampled: Vec::new(),
        replays: Default::default(),
        enhanced: enhanced.map(|(method, _)| Box::new(enhanced_auth::Enhanced::new(method))),
        _live: live,
    };
    let params = ConnParams {
        version,
        receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX),
        max_packet_size: properties.maximum_packet_size.unwrap_or(u32::MAX),
        topic_alias_maximum: properties.topic_alias_maximum.unwrap_or(0),
    };
    conn.with_session(|s, now, out| s.attach(now, params, out));
    conn.slot.mailbox.set_online(true);
    conn.slot.mailbox.ready.notify_one();
    announce(&conn, &setup, clean_start);
    Some(conn)
}

/// The `$SYS` `connected` event of a connection that was just accepted.
fn announce<S>(conn: &Conn<S>, setup: &Setup, clean_start: bool) {
    let info = crate::sys::events::ConnectInfo {
        keepalive: setup.keep_alive,
        clean_start,
        expiry_interval: setup.expiry_secs,
        connected_at_ms: cluster::now_ms(),
    };
    let client = super::close::event_client(&conn.authz, conn.version);
    crate::sys::events::client_connected(&conn.ctx, &client, info);
}

enum FirstError {
    Io,
    Decode(DecodeError),
}

async fn read_first<R: AsyncRead + Unpin>(
    decoder: &mut Decoder,
    reader: &mut R,
    rbuf: &mut BytesMut,
) -> Result<Box<Connect>, FirstError> {
    loop {
        match decoder.decode(rbuf) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(_)) => return Err(FirstError::Decode(DecodeError::FirstPacketNotConnect)),
            Ok(None) => {}
            Err(e) => return Err(FirstError::Decode(e)),
        }
        match reader.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(FirstError::Io),
            Ok(_) => {}
        }
    }
}

/// Claims the client id in the registry and installs this connection as the session's owner:
/// resumes the session held here (kicking its connection), or, with clean start = 0 and a
/// session that existed cluster-wide but not in this process, rebuilds it from the
/// `subscriptions` table; otherwise starts a new one. Returns the slot and session present,
/// or `None` when the claim did not commit (nothing was touched then).
async fn claim(
    ctx: &Arc<Ctx>,
    c: &Connect,
    setup: &Setup,
    (conn_id, ip): (u64, std::net::IpAddr),
    control: oneshot::Sender<Control>,
) -> Option<(Arc<SessionSlot>, bool)> {
    let mut control = Some(control);
    let claimed = cluster::claim(
        &ctx.tables,
        &setup.client_id,
        c.clean_start,
        setup.expiry_secs,
        c.protocol,
    )
    .await?;
    if let Some(old) = ctx.local.sessions.get(&setup.client_id) {
        if c.clean_start {
            discard_local(ctx, &old).await;
        } else if resume_local(&old, setup, conn_id, &mut control, claimed.generation) {
            return Some((old, true));
        }
    }
    let slot = new_slot(ctx, c, setup, conn_id, control, claimed.generation).await;
    let present = !c.clean_start && claimed.session_existed;
    if present {
        let previous = claimed.previous;
        let lives_with_connection = previous
            .as_ref()
            .is_some_and(|p| p.session_expiry_secs == 0);
        // Held by another live replicant: its in-flight and queued messages move here.
        let from = previous.map(|p| p.node).filter(|node| node != ctx.node());
        let mut handed = false;
        if let Some(node) = &from {
            handed = handover::take::take_over(ctx, &slot, node, claimed.generation).await;
            let e = Event::SessionTakeover { from: node };
            traced::record(ctx, &setup.client_id, ip, &e);
        }
        // A session with expiry 0 ends with its connection; its row can still read
        // "connected" while its owner's removal waits to commit. Not handed over (nor resumed
        // here, above), it is gone: session present = 0 (MQTT 5.0 3.2.2.1.1).
        if !handed && lives_with_connection {
            return Some((slot, false));
        }
        super::restore::restore(ctx, &slot).await;
        if let Some(node) = from.filter(|_| handed) {
            // Our routes are now known on every replicant: the old owner may stop forwarding.
            handover::take::finish(ctx, &node, &setup.client_id, claimed.generation);
        }
    }
    Some((slot, present))
}

/// Takes over the session held in this process (clean start = 0): kicks its connection and
/// makes `conn_id` the owner. False when that session already ended.
fn resume_local(
    old: &SessionSlot,
    setup: &Setup,
    conn_id: u64,
    control: &mut Option<oneshot::Sender<Control>>,
    generation: u64,
) -> bool {
    let mut inner = old.inner.lock();
    if inner.ended || inner.leaving != Leaving::No {
        return false;
    }
    if let Some(tx) = inner.control.take() {
        metrics::counter!(m::TAKEOVERS_TOTAL).increment(1);
        let _ = tx.send(Control::Kick {
            reason: ReasonCode::SessionTakenOver,
            session_ends: false,
        });
    }
    inner.owner = Some(conn_id);
    inner.control = control.take();
    inner.generation = generation;
    inner.expiry_secs = setup.expiry_secs;
    inner.epoch += 1;
    true
}

/// Ends the session held in this process (clean start = 1), kicking its connection.
async fn discard_local(ctx: &Arc<Ctx>, old: &Arc<SessionSlot>) {
    let kicked = old.inner.lock().control.take();
    if let Some(tx) = kicked {
        metrics::counter!(m::TAKEOVERS_TOTAL).increment(1);
        let _ = tx.send(Control::Kick {
            reason: ReasonCode::SessionTakenOver,
            session_ends: true,
        });
    }
    super::end_session(ctx, old, false).await;
}

/// Creates and registers an empty session owned by `conn_id`.
async fn new_slot(
    ctx: &Arc<Ctx>,
    c: &Connect,
    setup: &Setup,
    conn_id: u64,
    control: Option<oneshot::Sender<Control>>,
    generation: u64,
) -> Arc<SessionSlot> {
    let owner = (Some(conn_id), control);
    let expiry = setup.expiry_secs;
    install_slot(ctx, &setup.client_id, c.protocol, owner, generation, expiry).await
}

/// Creates and registers an empty session for `client_id`, owned by `owner` (a connection
/// and its control channel; `(None, None)` for a session adopted without a connection).
/// A session of the same id installed meanwhile by a concurrent CONNECT is ended.
pub(crate) async fn install_slot(
    ctx: &Arc<Ctx>,
    client_id: &Arc<str>,
    version: ProtocolVersion,
    owner: (Option<u64>, Option<oneshot::Sender<Control>>),
    generation: u64,
    expiry_secs: u32,
) -> Arc<SessionSlot> {
    let live = ctx.runtime.current();
    let mailbox = Arc::new(Mailbox::new(live.queue, ctx.local.queue_budget.clone()));
    let params = ConnParams {
        version,
        receive_maximum: u16::MAX,
        max_packet_size: u32::MAX,
        topic_alias_maximum: 0,
    };
    let slot = Arc::new(SessionSlot {
        id: ctx.next_id(),
        client_id: client_id.clone(),
        mailbox: mailbox.clone(),
        inner: parking_lot::Mutex::new(SlotInner {
            session: Session::new(client_id.clone(), live.limits.clone(), params),
            owner: owner.0,
            control: owner.1,
            generation,
            expiry_secs,
            epoch: 1,
            ended: false,
            leaving: Leaving::No,
            conn_info: None,
            disconnected_at_ms: 0,
        }),
        created_at_ms: crate::api::now_ms(),
        stats: Default::default(),
    });
    ctx.local.router.register(slot.id, mailbox);
    if let Some(prev) = ctx.local.sessions.insert(slot.clone()) {
        // A concurrent CONNECT for the same id lost the race to us: end what it installed.
        debug!(%client_id, "replacing a concurrently installed session");
        if let Some(tx) = prev.inner.lock().control.take() {
            let _ = tx.send(Control::Kick {
                reason: ReasonCode::SessionTakenOver,
                session_ends: true,
            });
        }
        super::end_session(ctx, &prev, false).await;
    }
    metrics::gauge!(m::SESSIONS).set(ctx.local.sessions.len() as f64);
    slot
}
