//! Refusing a CONNECT: the CONNACK with the reason (3.1.1: the closest return code), counted,
//! written within a bound, then a lingering close. Every refusal of the CONNECT phase
//! goes through here.

use std::time::Duration;

use bytes::BytesMut;
use meshmq_shared::codec::{
    self, ConnAck, DecodeError, Packet, Properties, ProtocolVersion, ReasonCode,
};
use meshmq_shared::metrics as m;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{Conn, reason_label};
use crate::ctx::Ctx;

/// Bound on writing a refusing CONNACK (and on shutting the write side after it).
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// After a refusing CONNACK (already written, write side shut down): a lingering close.
pub(super) async fn refused<S>(
    ctx: &Ctx,
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
) -> Option<Conn<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    super::linger(reader, writer, ctx.close_linger()).await;
    None
}

/// A CONNECT that could not be decoded: answer with a CONNACK only where the version is
/// known well enough to do it right (unsupported level → 0x84 / return code 1).
pub(super) async fn refuse_undecodable<W: AsyncWrite + Unpin>(writer: &mut W, e: &DecodeError) {
    if let DecodeError::UnsupportedProtocolVersion { level } = e {
        let version = if *level >= 5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        refuse(writer, version, ReasonCode::UnsupportedProtocolVersion).await;
    }
}

pub(super) async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: ProtocolVersion,
    code: ReasonCode,
) {
    refuse_with(writer, version, code, Properties::default()).await;
}

pub(super) async fn refuse_with<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: ProtocolVersion,
    code: ReasonCode,
    properties: Properties,
) {
    metrics::counter!(m::CONNACK_TOTAL, "reason" => reason_label(code)).increment(1);
    metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => reason_label(code)).increment(1);
    let ack = ConnAck {
        session_present: false,
        code,
        properties,
    };
    let mut buf = BytesMut::new();
    if codec::encode(&Packet::ConnAck(ack), version, &mut buf).is_ok() {
        let write = async {
            writer.write_all(&buf).await?;
            writer.flush().await
        };
        let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, write).await;
    }
    let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, writer.shutdown()).await;
}
