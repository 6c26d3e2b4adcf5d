//! A lean MQTT client over a transport stream (TCP, TLS, WebSocket: [`Transport`]): connect,
//! CONNECT/CONNACK, SUBSCRIBE/SUBACK, and then hand the stream (plus any bytes already read)
//! to the hot loops in `publisher` and `subscriber`.
//!
//! It owns only the handshake. It must never sit on the per-message path: once connected,
//! the loops read and write bytes themselves with the helpers in `wire`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::endpoint::Endpoint;
use crate::transport::{BoxStream, Transport};
use crate::wire::{self, FrameHeader, MqttVersion};

/// A connected MQTT session before its hot loop starts.
pub struct MqttConn {
    /// The stream (TCP_NODELAY set on its socket, so small acks are not held back).
    stream: BoxStream,
    /// Bytes read past the last handshake packet (a PUBLISH may follow SUBACK at once).
    buf: BytesMut,
    /// Protocol level spoken on this connection.
    version: MqttVersion,
}

impl std::fmt::Debug for MqttConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConn")
            .field("buffered", &self.buf.len())
            .field("version", &self.version)
            .finish()
    }
}

impl MqttConn {
    /// Opens `transport` to `endpoint` (resolved to `addr`) and completes CONNECT/CONNACK,
    /// all within `timeout`.
    pub async fn connect(
        transport: &Transport,
        endpoint: &Endpoint,
        addr: SocketAddr,
        version: MqttVersion,
        client_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<MqttConn> {
        let fut = async {
            let stream = transport.open(endpoint, addr, timeout, client_id).await?;
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
            conn.stream.flush().await.context("sending CONNECT")?;
            let (header, body) = conn.read_packet().await.context("waiting for CONNACK")?;
            wire::check_connack(&header, &body)?;
            Ok(conn)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .with_context(|| format!("{client_id}: no CONNACK within {timeout:?}"))?
    }

    /// [`MqttConn::connect`] over plain TCP to `addr`.
    pub async fn connect_tcp(
        addr: SocketAddr,
        version: MqttVersion,
        client_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<MqttConn> {
        let endpoint = Endpoint::new(&addr.ip().to_string(), addr.port());
        Self::connect(
            &Transport::default(),
            &endpoint,
            addr,
            version,
            client_id,
            timeout,
        )
        .await
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
            self.stream.flush().await.context("sending SUBSCRIBE")?;
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
    pub fn into_parts(self) -> (BoxStream, BytesMut) {
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
