//! One MQTT session of the `conn`/`sub`/`pub`/`storm` clients over any [`Transport`]:
//! connect (transport set-up, CONNECT, CONNACK) following MQTT 5 Server References, and
//! SUBSCRIBE/SUBACK; then the role loops in `clients` read and write the stream themselves.
//!
//! Every wait has a deadline ([`ClientOpts::timeout`]). It must never follow a redirect to a
//! server outside the loopback policy ([`crate::redirect`]), and never follows more than
//! [`MAX_REDIRECTS`] in one connect.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint::Endpoint;
use crate::failure::{BadRedirect, Closed, Timeout};
use crate::redirect;
use crate::transport::{BoxStream, Transport};
use crate::wire::{self, ConnectSpec, FrameHeader, MqttVersion, WireError};

/// Redirects followed at most by one connect (a loop of references ends here).
pub const MAX_REDIRECTS: u32 = 5;

/// How every client of a run connects.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// Protocol level.
    pub version: MqttVersion,
    /// Keep-alive, seconds (0 = off); the clients ping at this period.
    pub keep_alive: u16,
    /// Clean Start / Clean Session.
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval, seconds.
    pub session_expiry: Option<u32>,
    /// `-u`.
    pub username: Option<String>,
    /// `-P`.
    pub password: Option<String>,
    /// TCP, TLS, WebSocket.
    pub transport: Transport,
    /// Deadline of each network wait: connect, handshake, SUBACK, a stalled write, an ack.
    pub timeout: Duration,
    /// Allow servers that are not on this machine (targets and redirects).
    pub allow_remote: bool,
    /// Follow MQTT 5 Server References (on unless `--no-redirect`).
    pub follow_redirects: bool,
}

impl ClientOpts {
    /// Loopback-only defaults: MQTT 5, clean start, keep-alive 300 s, 10 s timeout.
    pub fn new(version: MqttVersion) -> ClientOpts {
        ClientOpts {
            version,
            keep_alive: 300,
            clean_start: true,
            session_expiry: None,
            username: None,
            password: None,
            transport: Transport::default(),
            timeout: Duration::from_secs(10),
            allow_remote: false,
            follow_redirects: true,
        }
    }
}

/// A connected session.
pub struct Session {
    /// The byte stream.
    pub stream: BoxStream,
    /// Bytes read past the last handshake packet.
    pub buf: BytesMut,
    /// Protocol level.
    pub version: MqttVersion,
    /// Where it is connected (after redirects).
    pub endpoint: Endpoint,
    /// The CONNACK's Session Present flag.
    pub session_present: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .field("version", &self.version)
            .finish()
    }
}

/// What one connect did, success or not.
#[derive(Debug)]
pub struct Attempt {
    /// The session, or why there is none.
    pub result: anyhow::Result<Session>,
    /// From the first TCP connect to the CONNACK that accepted (or to the failure).
    pub latency: Duration,
    /// Server References followed.
    pub redirects: u32,
}

/// A server to try: where it is and the address it resolved to (`None`: resolve first).
#[derive(Debug, Clone)]
pub struct Target {
    /// As configured or as referenced.
    pub endpoint: Endpoint,
    /// Resolved address, if already known.
    pub addr: Option<SocketAddr>,
}

enum Once {
    Connected(Session),
    Redirect(Vec<Endpoint>),
}

/// Connects `client_id` to the first of `targets` that accepts, following Server
/// References (unless disabled) at most [`MAX_REDIRECTS`] times.
pub async fn connect(targets: Vec<Target>, client_id: &str, opts: &ClientOpts) -> Attempt {
    let started = Instant::now();
    let mut redirects = 0;
    let mut targets = targets;
    let result = loop {
        let mut last_err = None;
        let mut moved = None;
        for target in &targets {
            match connect_once(target, client_id, opts).await {
                Ok(Once::Connected(session)) => {
                    return Attempt {
                        result: Ok(session),
                        latency: started.elapsed(),
                        redirects,
                    };
                }
                Ok(Once::Redirect(list)) => {
                    moved = Some(list);
                    break;
                }
                Err(err) => last_err = Some(err),
            }
        }
        match moved {
            Some(_) if redirects >= MAX_REDIRECTS => {
                break Err(anyhow::Error::new(BadRedirect(format!(
                    "more than {MAX_REDIRECTS} redirects"
                ))));
            }
            Some(list) => {
                redirects += 1;
                targets = list
                    .into_iter()
                    .map(|endpoint| Target {
                        endpoint,
                        addr: None,
                    })
                    .collect();
            }
            None => break Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no server to try"))),
        }
    };
    Attempt {
        result,
        latency: started.elapsed(),
        redirects,
    }
}

async fn connect_once(target: &Target, client_id: &str, opts: &ClientOpts) -> anyhow::Result<Once> {
    let endpoint = &target.endpoint;
    let fut = async {
        let addr = match target.addr {
            Some(addr) => addr,
            None => resolve(endpoint, opts.allow_remote).await?,
        };
        let stream = opts
            .transport
            .open(endpoint, addr, opts.timeout, client_id)
            .await?;
        let mut session = Session {
            stream,
            buf: BytesMut::with_capacity(4096),
            version: opts.version,
            endpoint: endpoint.clone(),
            session_present: false,
        };
        let spec = ConnectSpec {
            version: opts.version,
            client_id,
            keep_alive: opts.keep_alive,
            clean_start: opts.clean_start,
            session_expiry: opts.session_expiry,
            username: opts.username.as_deref(),
            password: opts.password.as_deref(),
        };
        let connect = wire::encode_connect_spec(&spec)?;
        session.write(&connect).await.context("sending CONNECT")?;
        let (header, body) = session.read_packet().await.context("waiting for CONNACK")?;
        let ack = wire::parse_connack(opts.version, &header, &body)?;
        if ack.code == 0 {
            session.session_present = ack.session_present;
            return Ok(Once::Connected(session));
        }
        if opts.follow_redirects
            && redirect::is_redirect(ack.code)
            && let Some(reference) = &ack.server_reference
        {
            let list = redirect::parse_reference(reference, endpoint.port, opts.allow_remote)?;
            return Ok(Once::Redirect(list));
        }
        Err(anyhow::Error::new(WireError::ConnectRefused(ack.code)))
    };
    tokio::time::timeout(opts.timeout, fut)
        .await
        .map_err(|_| Timeout("CONNACK"))?
        .with_context(|| format!("{client_id} -> {endpoint}"))
}

/// Resolves `endpoint` to one address: loopback only unless `allow_remote`, IPv4 first
/// (a name like `localhost` may list `::1` first while the broker listens on 127.0.0.1).
pub async fn resolve(endpoint: &Endpoint, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .with_context(|| format!("resolving {endpoint}"))?
        .filter(|a| allow_remote || a.ip().is_loopback())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{endpoint} has no loopback address"))
}

impl Session {
    /// Writes all of `bytes` and flushes (WebSocket and TLS buffer otherwise).
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one whole packet (handshakes only; no deadline of its own).
    async fn read_packet(&mut self) -> anyhow::Result<(FrameHeader, Vec<u8>)> {
        match wire::read_handshake_packet(&mut self.stream, &mut self.buf).await? {
            Some(packet) => Ok(packet),
            None => Err(Closed.into()),
        }
    }

    /// Subscribes to `filter` at `qos` and waits (bounded) for a SUBACK that grants it.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: u8,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        const PACKET_ID: u16 = 1;
        let fut = async {
            let sub = wire::encode_subscribe(self.version, PACKET_ID, filter, qos)?;
            self.write(&sub).await.context("sending SUBSCRIBE")?;
            self.take_suback(PACKET_ID).await
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Timeout("SUBACK"))?
            .with_context(|| format!("subscribing to {filter}"))
    }

    /// Reads until the SUBACK arrives, removes it from the buffer and checks it. PUBLISH
    /// packets before it (retained or queued messages) stay in the buffer for the role loop.
    async fn take_suback(&mut self, packet_id: u16) -> anyhow::Result<()> {
        let mut pos = 0;
        loop {
            while let Some(header) = wire::parse_header(&self.buf[pos..])? {
                if header.body_len > crate::clients::MAX_PACKET {
                    bail!("broker sent a {} byte packet", header.body_len);
                }
                if self.buf.len() - pos < header.frame_len() {
                    break;
                }
                if header.kind() == wire::kind::PUBLISH {
                    pos += header.frame_len();
                    continue;
                }
                let body = self.buf[pos + header.header_len..pos + header.frame_len()].to_vec();
                let mut tail = self.buf.split_off(pos);
                tail.advance(header.frame_len());
                self.buf.extend_from_slice(&tail);
                wire::check_suback(self.version, &header, &body, packet_id)?;
                return Ok(());
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(Closed.into());
            }
        }
    }

    /// Sends DISCONNECT (bounded by one second) and closes the stream.
    pub async fn goodbye(mut self) {
        let bye = async {
            let _ = self.write(&wire::DISCONNECT).await;
            let _ = self.stream.shutdown().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }
}
