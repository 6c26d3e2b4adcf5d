//! MQTT 5.0 enhanced authentication (section 4.12) on a connection, with the SCRAM
//! authenticator ([`crate::authn::scram`]): the exchange at CONNECT ([`at_connect`]: CONNECT
//! with client-first → AUTH 0x18 server-first → AUTH 0x18 client-final → CONNACK Success with
//! server-final) and re-authentication on the live connection ([`Conn::on_auth`]: AUTH 0x19
//! client-first → AUTH 0x18 server-first → AUTH 0x18 client-final → AUTH 0x00 with
//! server-final).
//!
//! Failures answer 0x87 Not authorized (CONNACK, or DISCONNECT on a re-authentication), as
//! EMQX does for every SCRAM failure; packets out of turn or another method are a protocol
//! error (0x82). Both exchanges are bounded by `mqtt.connect_timeout`; each message by the
//! exchange's own limit and the packet size limit.

use bytes::{Bytes, BytesMut};
use meshmq_shared::codec::{Auth, Connect, Decoder, Packet, Properties, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{Conn, Exit};
use crate::authn::scram::{self, Allowed, Pending};
use crate::ctx::Ctx;
use crate::session::Outgoing;

/// How the exchange at CONNECT ended.
pub(super) enum Outcome {
    /// Authenticated: answer CONNACK Success with server-final.
    Allowed(Allowed),
    /// Answer CONNACK with this code and close.
    Refused(ReasonCode),
    /// The client went away (socket closed or DISCONNECT): nothing to answer.
    Dropped,
}

/// The enhanced authentication of a connected client: its method, and a re-authentication
/// in progress (with its deadline).
pub(super) struct Enhanced {
    method: String,
    pending: Option<(Pending, tokio::time::Instant)>,
}

impl Enhanced {
    pub(super) fn new(method: String) -> Self {
        Enhanced {
            method,
            pending: None,
        }
    }

    /// When the re-authentication in progress must have finished.
    pub(super) fn deadline(&self) -> Option<tokio::time::Instant> {
        self.pending.as_ref().map(|(_, d)| *d)
    }
}

/// The exchange at CONNECT for `method` (an authenticator answers it: checked by
/// `validate`). The caller bounds it in time.
pub(super) async fn at_connect<S>(
    ctx: &Ctx,
    connect: &Connect,
    method: &str,
    io: (&mut ReadHalf<S>, &mut WriteHalf<S>),
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = io;
    let Some(authenticator) = ctx.authn.scram(method) else {
        return Outcome::Refused(ReasonCode::BadAuthenticationMethod);
    };
    let client_first = connect.properties.authentication_data.as_deref();
    let Ok((pending, server_first)) = authenticator.start(&ctx.tables, client_first.unwrap_or(&[]))
    else {
        return Outcome::Refused(ReasonCode::NotAuthorized);
    };
    let mut buf = BytesMut::new();
    let auth = auth_packet(ReasonCode::ContinueAuthentication, method, server_first);
    if meshmq_shared::codec::encode(&auth, connect.protocol, &mut buf).is_err() {
        return Outcome::Refused(ReasonCode::UnspecifiedError);
    }
    if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
        return Outcome::Dropped;
    }
    let reply = loop {
        match decoder.decode(rbuf) {
            Ok(Some(p)) => break p,
            Ok(None) => {}
            Err(e) => {
                scram::count_failure("protocol_error");
                return Outcome::Refused(e.reason_code());
            }
        }
        match reader.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Outcome::Dropped,
            Ok(_) => {}
        }
    };
    let client_final = match reply {
        Packet::Auth(a)
            if a.reason == ReasonCode::ContinueAuthentication
                && a.properties.authentication_method.as_deref() == Some(method) =>
        {
            a.properties.authentication_data.unwrap_or_default()
        }
        Packet::Disconnect(_) => return Outcome::Dropped,
        // MQTT-4.12.0-4 / -5: only AUTH 0x18 with the same method (or DISCONNECT) now.
        _ => {
            scram::count_failure("protocol_error");
            return Outcome::Refused(ReasonCode::ProtocolError);
        }
    };
    match pending.finish(&client_final, connect.username.as_deref()) {
        Ok(allowed) => Outcome::Allowed(allowed),
        Err(_) => Outcome::Refused(ReasonCode::NotAuthorized),
    }
}

/// An AUTH packet with the method and data.
fn auth_packet(reason: ReasonCode, method: &str, data: Bytes) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.to_owned()),
            authentication_data: Some(data),
            ..Properties::default()
        },
    })
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// AUTH from a connected client: a re-authentication (MQTT 5.0 section 4.12.1).
    pub(super) fn on_auth(&mut self, a: Auth) -> Option<Exit> {
        let Some(enhanced) = self.enhanced.as_mut() else {
            // MQTT-4.12.0-7: no method at CONNECT, no AUTH.
            return self.auth_protocol_error();
        };
        if a.properties.authentication_method.as_deref() != Some(enhanced.method.as_str()) {
            // MQTT-4.12.1-1: re-authentication uses the method of CONNECT.
            return self.auth_protocol_error();
        }
        let method = enhanced.method.clone();
        let data = a.properties.authentication_data.unwrap_or_default();
        let step = match (a.reason, enhanced.pending.take()) {
            (ReasonCode::ReAuthenticate, None) => self
                .ctx
                .authn
                .scram(&method)
                .and_then(|s| s.start(&self.ctx.tables, &data).ok())
                .map(|(pending, server_first)| {
                    let bound = self.ctx.config.mqtt.connect_timeout.max(1);
                    let deadline =
                        tokio::time::Instant::now() + std::time::Duration::from_secs(bound);
                    if let Some(e) = self.enhanced.as_mut() {
                        e.pending = Some((pending, deadline));
                    }
                    (ReasonCode::ContinueAuthentication, server_first)
                }),
            (ReasonCode::ContinueAuthentication, Some((pending, _))) => {
                let username = self.authz.info.username.clone();
                pending
                    .finish(&data, username.as_deref())
                    .ok()
                    .map(|allowed| {
                        // The user's superuser flag may have changed since CONNECT: the
                        // re-authenticated connection is authorized as the user is now.
                        if allowed.superuser != self.authz.info.superuser {
                            let mut client = (*self.authz).clone();
                            client.info.superuser = allowed.superuser;
                            self.authz = std::sync::Arc::new(client);
                            self.authz_cache = self.ctx.authz.new_cache();
                        }
                        (ReasonCode::Success, allowed.server_final)
                    })
            }
            _ => return self.auth_protocol_error(),
        };
        match step {
            Some((reason, data)) => {
                let p = auth_packet(reason, &method, data);
                self.out.push(Outgoing::Packet(p));
                self.encode_out();
                None
            }
            None => {
                // MQTT-4.12.1-2: a failed re-authentication ends the connection.
                self.queue_disconnect(ReasonCode::NotAuthorized);
                Some(Exit::ServerClose(ReasonCode::NotAuthorized))
            }
        }
    }

    /// The re-authentication in progress ran past its deadline: the connection ends.
    pub(super) fn reauth_expired(&mut self) -> Option<Exit> {
        let expired = self
            .enhanced
            .as_ref()
            .and_then(|e| e.deadline())
            .is_some_and(|d| d <= tokio::time::Instant::now());
        if !expired {
            return None;
        }
        scram::count_failure("timeout");
        self.queue_disconnect(ReasonCode::NotAuthorized);
        Some(Exit::ServerClose(ReasonCode::NotAuthorized))
    }

    fn auth_protocol_error(&mut self) -> Option<Exit> {
        metrics::counter!(
            meshmq_shared::metrics::PROTOCOL_ERRORS_TOTAL,
            "reason" => "unexpected_auth"
        )
        .increment(1);
        self.queue_disconnect(ReasonCode::ProtocolError);
        Some(Exit::ServerClose(ReasonCode::ProtocolError))
    }
}
