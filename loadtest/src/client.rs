//! A lean MQTT client over a tokio `TcpStream`: connect, CONNECT/CONNACK, SUBSCRIBE/SUBACK,
//! and then hand the raw socket (plus any bytes already read) to the hot loops in
//! `publisher` and `subscriber`.
//!
//! It owns only the handshake. It must never sit on the per-message path: once connected,
//! the loops read and write bytes themselves with the helpers in `wire`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire::{self, FrameHeader, MqttVersion};

/// A connected MQTT session before its hot loop starts.
#[derive(Debug)]
pub struct MqttConn {
    /// The socket, with TCP_NODELAY set so small acks are not held back.
    stream: TcpStream,
    /// Bytes read past the last handshake packet (a PUBLISH may follow SUBACK at once).
    buf: BytesMut,
    /// Protocol level spoken on this connection.
    version: MqttVersion,
}

impl MqttConn {
    /// Opens a TCP connection to `addr` and completes CONNECT/CONNACK within `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        version: MqttVersion,
        client_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<MqttConn> {
        let fut = async {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true).context("setting TCP_NODELAY")?;
            let mut conn = MqttConn {
                stream,
                buf: BytesMut::with_capacity(4096),
                version,
            };
            let connect = wire::encode_connect(version, client_id, 0)?;
            conn.stream
                .write_all(&connect)
                .await
                .context("sending CONNECT")?;
            let (header, body) = conn.read_packet().await.context("waiting for CONNACK")?;
            wire::check_connack(&header, &body)?;
            Ok(conn)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .with_context(|| format!("{client_id}: no CONNACK within {timeout:?}"))?
    }

    /// Subscribes to `filter` at `qos` and waits for a SUBACK that grants it.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: u8,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        const PACKET_ID: u16 = 1;
        let fut = async {
            let sub = wire::encode_subscribe(self.version, PACKET_ID, filter, qos)?;
            self.stream
                .write_all(&sub)
                .await
                .context("sending SUBSCRIBE")?;
            let (header, body) = self.read_packet().await.context("waiting for SUBACK")?;
            wire::check_suback(self.version, &header, &body, PACKET_ID)?;
            anyhow::Ok(())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .with_context(|| format!("no SUBACK for {filter} within {timeout:?}"))?
    }

    /// The protocol level of this connection.
    pub fn version(&self) -> MqttVersion {
        self.version
    }

    /// The socket and the bytes already read from it, for the hot loop.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// Reads one whole packet; returns its header and body.
    async fn read_packet(&mut self) -> anyhow::Result<(FrameHeader, Vec<u8>)> {
        match wire::read_handshake_packet(&mut self.stream, &mut self.buf).await? {
            Some(packet) => Ok(packet),
            None => Err(anyhow::anyhow!("connection closed by the broker")),
        }
    }
}
