//! What a connection tells the online traces (`crate::trace`): one call per event, each
//! starting with the one-atomic check [`Traces::active`](crate::trace::Traces::active), so
//! an untraced node pays nothing else on its hot paths.
//!
//! Owns the mapping of a connection's end ([`Exit`]) and of its session's drop counters to
//! trace events; it never decides anything about the connection.

use std::net::IpAddr;

use meshmq_shared::codec::{ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Conn, Exit};
use crate::ctx::Ctx;
use crate::session::Drops;
use crate::trace::{Event, Subject};

/// Records `event` about client `client_id` at `ip`, if anything is traced.
pub(super) fn record(ctx: &Ctx, client_id: &str, ip: IpAddr, event: &Event<'_>) {
    if ctx.trace.active() {
        ctx.trace.record(Subject { client_id, ip }, event);
    }
}

/// The protocol's label in a `connect` event.
pub(super) fn proto_label(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

/// A QoS as a number.
pub(super) fn qos_num(q: QoS) -> u8 {
    q as u8
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Records `event` about this connection's client, if anything is traced.
    pub(super) fn trace(&self, event: &Event<'_>) {
        record(&self.ctx, &self.client_id, self.authz.info.peerhost, event);
    }

    /// Records the session's drops (by reason), if anything is traced.
    pub(super) fn trace_drops(&self, d: &Drops) {
        if !self.ctx.trace.active() {
            return;
        }
        for (reason, count) in [
            ("queue_full", d.queue_full),
            ("expired", d.expired),
            ("too_large_for_client", d.too_large),
            ("awaiting_rel_full", d.awaiting_rel_full),
        ] {
            if count > 0 {
                self.trace(&Event::Dropped { reason, count });
            }
        }
    }
}

/// The `disconnect` event of a connection that ended with `exit`.
pub(super) fn disconnect_event(exit: Exit) -> Event<'static> {
    let (by, reason) = match exit {
        Exit::ClientDisconnect(r) => ("client", Some(r.as_u8())),
        Exit::Dropped => ("socket_closed", None),
        Exit::ServerClose(r) => ("server", Some(r.as_u8())),
        Exit::Kicked {
            reason: ReasonCode::AdministrativeAction,
            ..
        } => ("kicked", Some(0x98)),
        Exit::Kicked { .. } => ("taken_over", Some(0x8E)),
        Exit::Banned => ("banned", Some(0x98)),
        Exit::Shutdown => ("shutdown", Some(0x8B)),
    };
    Event::Disconnect { by, reason }
}
