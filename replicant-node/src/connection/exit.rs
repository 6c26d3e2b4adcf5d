//! Why a connection's main loop ended ([`Exit`]), and the `reason` label each ending is
//! counted under in `meshmq_disconnects_total` (EMQX's disconnect reasons where it has one).
//!
//! Owns the mapping only; the connection task counts each ending once, when its main loop
//! returns. It must never count or send anything itself.

use meshmq_shared::codec::ReasonCode;

/// Why the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// The client sent DISCONNECT with this reason (0x00 normal, 0x04 with will).
    ClientDisconnect(ReasonCode),
    /// The socket closed or failed without DISCONNECT (a failed or timed-out write too).
    Dropped,
    /// We closed it for a protocol reason (DISCONNECT already queued for 5.0).
    ServerClose(ReasonCode),
    /// Another connection took the session (or discarded it), or an operator closed it:
    /// DISCONNECT `reason` (5.0) is sent.
    Kicked {
        /// 0x8E Session taken over; 0x98 Administrative action for an operator's kick.
        reason: ReasonCode,
        /// The session ended with the connection (its will goes at once).
        session_ends: bool,
    },
    /// A ban matched the client (DISCONNECT 0x98 already queued for 5.0); the session ends.
    Banned,
    /// The broker is stopping.
    Shutdown,
}

impl Exit {
    /// An operator closed the connection (`DELETE /api/v5/clients/{clientid}`): unlike a
    /// takeover, the connection still owns its session, which ends with it.
    pub(super) fn is_operator_kick(self) -> bool {
        matches!(
            self,
            Exit::Kicked {
                reason: ReasonCode::AdministrativeAction,
                ..
            }
        )
    }

    /// The `reason` label of `meshmq_disconnects_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Exit::ClientDisconnect(_) => "normal",
            Exit::Dropped => "sock_closed",
            Exit::ServerClose(rc) => server_close_label(rc),
            Exit::Kicked {
                reason: ReasonCode::AdministrativeAction,
                ..
            } => "kicked",
            Exit::Kicked {
                session_ends: true, ..
            } => "discarded",
            Exit::Kicked { .. } => "takenover",
            Exit::Banned => "banned",
            Exit::Shutdown => "server_shutdown",
        }
    }
}

/// The label of a close the server decided, by the DISCONNECT reason it sent (or would
/// have sent, for 3.1.1).
fn server_close_label(rc: ReasonCode) -> &'static str {
    match rc {
        ReasonCode::KeepAliveTimeout => "keepalive_timeout",
        ReasonCode::UseAnotherServer | ReasonCode::ServerMoved => "evacuated",
        ReasonCode::NotAuthorized | ReasonCode::BadAuthenticationMethod => "not_authorized",
        ReasonCode::QuotaExceeded => "quota_exceeded",
        ReasonCode::PacketTooLarge => "frame_too_large",
        ReasonCode::AdministrativeAction => "kicked",
        ReasonCode::ServerShuttingDown => "server_shutdown",
        _ => "protocol_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_has_an_emqx_like_label() {
        let cases = [
            (Exit::ClientDisconnect(ReasonCode::Success), "normal"),
            (
                Exit::ClientDisconnect(ReasonCode::DisconnectWithWillMessage),
                "normal",
            ),
            (Exit::Dropped, "sock_closed"),
            (
                Exit::ServerClose(ReasonCode::KeepAliveTimeout),
                "keepalive_timeout",
            ),
            (
                Exit::ServerClose(ReasonCode::MalformedPacket),
                "protocol_error",
            ),
            (
                Exit::ServerClose(ReasonCode::ProtocolError),
                "protocol_error",
            ),
            (Exit::ServerClose(ReasonCode::UseAnotherServer), "evacuated"),
            (
                Exit::ServerClose(ReasonCode::NotAuthorized),
                "not_authorized",
            ),
            (
                Exit::Kicked {
                    reason: ReasonCode::SessionTakenOver,
                    session_ends: false,
                },
                "takenover",
            ),
            (
                Exit::Kicked {
                    reason: ReasonCode::SessionTakenOver,
                    session_ends: true,
                },
                "discarded",
            ),
            (
                Exit::Kicked {
                    reason: ReasonCode::AdministrativeAction,
                    session_ends: true,
                },
                "kicked",
            ),
            (Exit::Banned, "banned"),
            (Exit::Shutdown, "server_shutdown"),
        ];
        for (exit, label) in cases {
            assert_eq!(exit.label(), label, "{exit:?}");
            // Only an operator's kick leaves the session to this connection to end.
            assert_eq!(exit.is_operator_kick(), label == "kicked", "{exit:?}");
        }
    }
}
