//! A raw MQTT client over a `TcpStream`: sends hand-written bytes or packets encoded by our
//! codec, and reads the broker's answers decoded with a deadline. Tests use it wherever the
//! exact bytes matter (flags, properties, packet ids, reason codes, what is *not* sent).
//!
//! It keeps a backlog of packets read but not yet asked for, so a test can wait for "the next
//! SUBACK" while PUBLISHes queue up. It never answers anything on its own (no auto-ack).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use meshmq_shared::codec::{
    self, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Will,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// Largest packet the raw client accepts from the broker.
const MAX_IN: u32 = 16 * 1024 * 1024;

/// How a read ended without a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// The broker sent bytes our codec rejects.
    Decode(String),
}

/// A byte stream a raw client can talk over: TCP, TLS, a socket that sent a PROXY header.
pub trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}

/// One raw connection to the broker.
pub struct RawClient {
    stream: Box<dyn RawIo>,
    /// Version used to encode and decode (set by [`RawClient::connect`]).
    pub version: ProtocolVersion,
    rbuf: BytesMut,
    backlog: VecDeque<Packet>,
    closed: bool,
    next_pid: u16,
}

/// A CONNECT with defaults: clean start, keep alive 60 s, no will, no properties.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A will message with no properties.
pub fn will(topic: &str, payload: &str, qos: QoS) -> Will {
    Will {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: Properties::default(),
    }
}

/// A PUBLISH with no properties (packet id 0; [`RawClient::publish`] assigns one).
pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: 0,
        payload: Bytes::copy_from_slice(payload),
        properties: Properties::default(),
    }
}

/// Subscription options with just a QoS.
pub fn sub_opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

impl RawClient {
    /// Opens a TCP connection; nothing is sent yet.
    pub async fn open(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient::over(stream)
    }

    /// A client over a stream already open (TLS, or after a PROXY header); nothing is sent.
    pub fn over(stream: impl RawIo + 'static) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            version: ProtocolVersion::V311,
            rbuf: BytesMut::with_capacity(8192),
            backlog: VecDeque::new(),
            closed: false,
            next_pid: 1,
        }
    }

    /// Opens a TCP connection whose receive buffer is `rcvbuf` bytes (the kernel may round
    /// it): a client that reads slowly, so the broker's writes back up in its send buffer.
    pub async fn open_with_rcvbuf(addr: SocketAddr, rcvbuf: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient::over(stream)
    }

    /// Reads raw bytes until the broker closes; `Ok(n)` after a clean close (FIN) with `n`
    /// bytes read, `Err` when the connection was reset or stayed open for `timeout`.
    pub async fn read_to_close(&mut self, timeout: Duration) -> std::io::Result<usize> {
        let mut n = self.rbuf.len();
        self.rbuf.clear();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Ok(n),
                Ok(Ok(k)) => {
                    n += k;
                    self.rbuf.clear();
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Opens a connection, sends `connect` and returns the CONNACK (panics on anything else).
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        RawClient::open(addr).await.handshake(connect).await
    }

    /// Sends `connect` on this connection and returns the CONNACK (panics on anything else).
    pub async fn handshake(self, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = self;
        c.version = connect.protocol;
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Ok(Packet::ConnAck(ack)) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with [`connect_packet`] defaults; asserts the CONNACK is a success.
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
        let (c, ack) = RawClient::connect_with(addr, connect_packet(version, client_id)).await;
        assert_eq!(
            ack.code,
            ReasonCode::Success,
            "CONNACK for {client_id}: {ack:?}"
        );
        c
    }

    /// Writes raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // A broker that already closed may reset the socket: that is for the reads to report.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Encodes and writes one packet with this client's version.
    pub async fn send(&mut self, p: &Packet) {
        let mut buf = BytesMut::new();
        codec::encode(p, self.version, &mut buf).expect("test packet encodes");
        self.send_bytes(&buf).await;
    }

    /// Encodes and writes one packet; the write's result (a reset shows here).
    pub async fn try_send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut buf = BytesMut::new();
        codec::encode(p, self.version, &mut buf).expect("test packet encodes");
        self.stream.write_all(&buf).await
    }

    /// A fresh non-zero packet id.
    pub fn pid(&mut self) -> u16 {
        let id = self.next_pid;
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        id
    }

    /// Next packet (backlog first), waiting up to [`WAIT`].
    pub async fn recv(&mut self) -> Result<Packet, RecvError> {
        self.recv_timeout(WAIT).await
    }

    /// Next packet (backlog first), waiting up to `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        if let Some(p) = self.backlog.pop_front() {
            return Ok(p);
        }
        self.read_packet(Instant::now() + timeout).await
    }

    /// Reads from the socket until one packet decodes or `deadline` passes.
    async fn read_packet(&mut self, deadline: Instant) -> Result<Packet, RecvError> {
        loop {
            match codec::decode_packet(&mut self.rbuf, self.version, MAX_IN) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Decode(format!("{e:?}"))),
            }
            if self.closed {
                return Err(RecvError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The first packet for which `pick` returns `Some`, leaving the others in the backlog.
    pub async fn recv_where<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> Result<T, RecvError> {
        if let Some(i) = self.backlog.iter().position(|p| pick(p).is_some()) {
            let p = self.backlog.remove(i).expect("index in range");
            return Ok(pick(&p).expect("picked before"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.read_packet(deadline).await?;
            if let Some(t) = pick(&p) {
                return Ok(t);
            }
            self.backlog.push_back(p);
        }
    }

    /// The next PUBLISH (other packets stay in the backlog).
    pub async fn recv_publish(&mut self) -> Publish {
        self.try_recv_publish(WAIT)
            .await
            .unwrap_or_else(|e| panic!("expected a PUBLISH: {e:?}"))
    }

    /// The next PUBLISH whose topic ends with `suffix` (other packets stay in the backlog).
    pub async fn recv_publish_ending(&mut self, suffix: &str) -> Publish {
        self.recv_where(WAIT, |p| match p {
            Packet::Publish(p) if p.topic.ends_with(suffix) => Some(p.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("expected a PUBLISH to *{suffix}: {e:?}"))
    }

    /// The next PUBLISH within `timeout`.
    pub async fn try_recv_publish(&mut self, timeout: Duration) -> Result<Publish, RecvError> {
        self.recv_where(timeout, |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Asserts no PUBLISH arrives within `window` (bounded: proves absence).
    pub async fn expect_no_publish(&mut self, window: Duration) {
        match self.try_recv_publish(window).await {
            Err(RecvError::Timeout) | Err(RecvError::Closed) => {}
            Ok(p) => panic!("unexpected PUBLISH {:?} payload {:?}", p.topic, p.payload),
            Err(e) => panic!("while proving no PUBLISH: {e:?}"),
        }
    }

    /// Subscribes to one filter and returns the SUBACK.
    pub async fn subscribe_opts(
        &mut self,
        filter: &str,
        opts: SubscriptionOptions,
        properties: Properties,
    ) -> SubAck {
        self.subscribe_many(&[(filter, opts)], properties).await
    }

    /// Subscribes to several filters in one SUBSCRIBE and returns the SUBACK.
    pub async fn subscribe_many(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
        properties: Properties,
    ) -> SubAck {
        let packet_id = self.pid();
        let filters = filters.iter().map(|(f, o)| ((*f).to_owned(), *o)).collect();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties,
        }))
        .await;
        self.recv_where(WAIT, |p| match p {
            Packet::SubAck(a) if a.packet_id == packet_id => Some(a.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("expected SUBACK {packet_id}: {e:?}"))
    }

    /// Subscribes at `qos` and asserts the grant.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let ack = self
            .subscribe_opts(filter, sub_opts(qos), Properties::default())
            .await;
        assert_eq!(
            ack.reasons,
            vec![ReasonCode::granted(qos)],
            "SUBACK for {filter}"
        );
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.unsubscribe_many(&[filter]).await;
    }

    /// Unsubscribes from several filters in one UNSUBSCRIBE and returns the UNSUBACK.
    pub async fn unsubscribe_many(&mut self, filters: &[&str]) -> UnsubAck {
        let packet_id = self.pid();
        let filters = filters.iter().map(|f| (*f).to_owned()).collect();
        let u = codec::Unsubscribe {
            packet_id,
            filters,
            properties: Properties::default(),
        };
        self.send(&Packet::Unsubscribe(u)).await;
        self.recv_where(WAIT, |p| match p {
            Packet::UnsubAck(a) if a.packet_id == packet_id => Some(a.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("expected UNSUBACK {packet_id}: {e:?}"))
    }

    /// Publishes and completes the QoS flow as a publisher (waits for PUBACK, or PUBREC →
    /// PUBREL → PUBCOMP). Returns the reason code of PUBACK / PUBREC.
    pub async fn publish_full(&mut self, mut p: Publish) -> ReasonCode {
        if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
            p.packet_id = self.pid();
        }
        let (qos, pid) = (p.qos, p.packet_id);
        self.send(&Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => {
                self.expect_ack(pid, |p| matches!(p, Packet::PubAck(_)))
                    .await
                    .reason
            }
            QoS::ExactlyOnce => {
                let rec = self
                    .expect_ack(pid, |p| matches!(p, Packet::PubRec(_)))
                    .await;
                if !rec.reason.is_error() {
                    self.send(&Packet::PubRel(PubResp::new(pid))).await;
                    self.expect_ack(pid, |p| matches!(p, Packet::PubComp(_)))
                        .await;
                }
                rec.reason
            }
        }
    }

    /// Publishes a payload without properties (see [`RawClient::publish_full`]).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &str,
        qos: QoS,
        retain: bool,
    ) -> ReasonCode {
        self.publish_full(publish_packet(topic, payload.as_bytes(), qos, retain))
            .await
    }

    /// Waits for the ack packet (PUBACK, PUBREC, PUBREL, PUBCOMP) with this packet id.
    pub async fn expect_ack(&mut self, pid: u16, kind: impl Fn(&Packet) -> bool) -> PubResp {
        self.recv_where(WAIT, |p| {
            let r = match p {
                Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => r,
                _ => return None,
            };
            (kind(p) && r.packet_id == pid).then(|| r.clone())
        })
        .await
        .unwrap_or_else(|e| panic!("expected an ack for packet id {pid}: {e:?}"))
    }

    /// Acknowledges a received PUBLISH as a subscriber (PUBACK, or PUBREC → PUBREL → PUBCOMP).
    pub async fn ack(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(PubResp::new(p.packet_id))).await,
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(PubResp::new(p.packet_id))).await;
                self.expect_ack(p.packet_id, |q| matches!(q, Packet::PubRel(_)))
                    .await;
                self.send(&Packet::PubComp(PubResp::new(p.packet_id))).await;
            }
        }
    }

    /// Sends PINGREQ and waits for PINGRESP: proves the connection is alive and served.
    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
        self.recv_where(WAIT, |p| matches!(p, Packet::PingResp).then_some(()))
            .await
            .unwrap_or_else(|e| panic!("expected PINGRESP: {e:?}"));
    }

    /// Sends DISCONNECT with `reason` (3.1.1: the plain DISCONNECT) and waits for the close.
    pub async fn disconnect(mut self, reason: ReasonCode) {
        self.send(&Packet::Disconnect(Disconnect::new(reason)))
            .await;
        let _ = self.stream.shutdown().await;
        let _ = self.wait_closed(WAIT).await;
    }

    /// Waits until the broker closes the connection; returns every packet read before the
    /// close (backlog included). Panics if it stays open for `timeout`.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Vec<Packet> {
        let mut seen: Vec<Packet> = self.backlog.drain(..).collect();
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_packet(deadline).await {
                Ok(p) => seen.push(p),
                Err(RecvError::Closed) => return seen,
                Err(RecvError::Decode(e)) => {
                    panic!("undecodable bytes before close: {e} (after {seen:?})")
                }
                Err(RecvError::Timeout) => {
                    panic!("connection still open after {timeout:?} (read {seen:?})")
                }
            }
        }
    }

    /// Waits for the close and asserts what came before it: nothing, or for 5.0 optionally a
    /// DISCONNECT whose reason is one of `v5_reasons` (nothing else is allowed).
    pub async fn expect_closed_with(&mut self, v5_reasons: &[ReasonCode]) -> Option<ReasonCode> {
        let seen = self.wait_closed(WAIT).await;
        let mut reason = None;
        for p in &seen {
            match p {
                Packet::Disconnect(d) if self.version.is_v5() && v5_reasons.contains(&d.reason) => {
                    reason = Some(d.reason)
                }
                other => panic!(
                    "unexpected packet before close: {other:?} (expected DISCONNECT in {v5_reasons:?})"
                ),
            }
        }
        reason
    }

    /// True once the broker has closed the socket (only known after a read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
