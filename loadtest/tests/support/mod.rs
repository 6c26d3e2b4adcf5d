//! A fake MQTT broker for the `conn`/`sub`/`pub`/`storm` tests: a tokio listener on
//! 127.0.0.1:0 (plain TCP, or TLS with a given rustls server config) that speaks just enough
//! MQTT: CONNACK (or a refusal with a Server Reference), SUBACK, PINGRESP, the QoS 1 and 2
//! acks, and forwards every PUBLISH from any connection to every subscriber, in order.
//!
//! Faults on demand ([`Faults`]): drop every Nth PUBLISH it receives (still acknowledged to
//! the publisher), forward the Nth twice, hold the Nth back behind the next one (a swap),
//! or send DISCONNECT with a Server Reference right after CONNACK. Its parser is written
//! here, apart from the library's, so a shared bug cannot hide. Polls have deadlines.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test crates; tests may unwrap

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

/// What the fake broker does wrong on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Drop PUBLISH number k (1-based, counted over all publishers) when k % n == 0.
    pub drop_every: Option<u64>,
    /// Forward PUBLISH number n twice.
    pub duplicate: Option<u64>,
    /// Forward PUBLISH number n after number n + 1.
    pub swap: Option<u64>,
    /// Refuse every CONNECT with this reason code and Server Reference (MQTT 5).
    pub refuse: Option<(u8, String)>,
    /// After a successful CONNACK, send DISCONNECT with this reason and Server Reference.
    pub kick: Option<(u8, String)>,
}

/// What the fake broker saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: AtomicUsize,
    /// CONNECT packets answered with success.
    pub connected: AtomicUsize,
    /// CONNECT packets refused.
    pub refused: AtomicUsize,
    /// SUBSCRIBE packets answered.
    pub subscribed: AtomicUsize,
    /// PUBLISH packets received from publishers.
    pub published: AtomicU64,
    /// PUBLISH frames written to subscribers (all of them).
    pub forwarded: AtomicU64,
    /// Client ids seen in CONNECT.
    pub client_ids: Mutex<Vec<String>>,
}

type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Vec<u8>>>>>;

/// A running fake broker.
#[derive(Clone)]
pub struct FakeBroker {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// What it saw.
    pub stats: Arc<Stats>,
}

struct Shared {
    faults: Faults,
    stats: Arc<Stats>,
    subscribers: Subscribers,
    /// PUBLISH numbering and the held-back frame of a swap, under one lock so the order
    /// of forwarding is the order of numbering.
    order: Mutex<(u64, Option<Vec<u8>>)>,
}

impl FakeBroker {
    /// Starts a plain-TCP fake broker.
    pub async fn start(faults: Faults) -> FakeBroker {
        Self::start_with(faults, None).await
    }

    /// Starts a fake broker; with `tls`, every connection does a TLS handshake first.
    pub async fn start_with(faults: Faults, tls: Option<tokio_rustls::TlsAcceptor>) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            faults,
            stats: stats.clone(),
            subscribers: Arc::default(),
            order: Mutex::new((0, None)),
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                match &tls {
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve(tls, shared).await;
                            }
                        });
                    }
                    None => {
                        tokio::spawn(serve(stream, shared));
                    }
                }
            }
        });
        FakeBroker { port, stats }
    }

    /// Polls `cond` on the stats every 5 ms until it holds or `within` passes.
    pub async fn wait_for(&self, within: Duration, cond: impl Fn(&Stats) -> bool) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if cond(&self.stats) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cond(&self.stats)
    }
}

async fn read_packet<S: AsyncRead>(rd: &mut ReadHalf<S>) -> Option<(u8, Vec<u8>)> {
    let first = rd.read_u8().await.ok()?;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let b = rd.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    rd.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

/// A frame from a first byte and a body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len > 0 { b | 0x80 } else { b });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Reason code + one Server Reference property (MQTT 5), as a CONNACK or DISCONNECT body
/// tail.
fn with_reference(code: u8, reference: &str) -> Vec<u8> {
    let mut props = vec![0x1c];
    props.extend_from_slice(&(reference.len() as u16).to_be_bytes());
    props.extend_from_slice(reference.as_bytes());
    let mut body = vec![code, props.len() as u8];
    body.extend_from_slice(&props);
    body
}

fn client_id(body: &[u8]) -> (u8, String) {
    let name_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let level = body[2 + name_len];
    let mut at = 2 + name_len + 4;
    if level == 5 {
        // Properties: one-byte length in these tests.
        at += 1 + usize::from(body[at]);
    }
    let id_len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    let id = String::from_utf8_lossy(&body[at + 2..at + 2 + id_len]).into_owned();
    (level, id)
}

async fn forward(shared: &Shared, frame: Vec<u8>) {
    let targets = shared.subscribers.lock().await.clone();
    for t in targets {
        if t.send(frame.clone()).await.is_ok() {
            shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn on_publish(shared: &Shared, frame: Vec<u8>) {
    let mut order = shared.order.lock().await;
    order.0 += 1;
    let n = order.0;
    shared.stats.published.fetch_add(1, Ordering::Relaxed);
    let f = &shared.faults;
    if f.drop_every.is_some_and(|every| n % every == 0) {
        return;
    }
    if f.swap == Some(n) {
        order.1 = Some(frame);
        return;
    }
    forward(shared, frame.clone()).await;
    if f.duplicate == Some(n) {
        forward(shared, frame).await;
    }
    if let Some(held) = order.1.take() {
        forward(shared, held).await;
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S, shared: Arc<Shared>) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out, mut outbox) = mpsc::channel::<Vec<u8>>(1024);
    tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut v5 = false;
    while let Some((first, body)) = read_packet(&mut rd).await {
        match first >> 4 {
            1 => {
                let (level, id) = client_id(&body);
                v5 = level == 5;
                shared.stats.client_ids.lock().await.push(id);
                if let Some((code, reference)) = &shared.faults.refuse {
                    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                    let mut ack = vec![0];
                    ack.extend_from_slice(&with_reference(*code, reference));
                    let _ = out.send(frame(0x20, &ack)).await;
                    break;
                }
                let connack = if v5 {
                    vec![0x20, 3, 0, 0, 0]
                } else {
                    vec![0x20, 2, 0, 0]
                };
                shared.stats.connected.fetch_add(1, Ordering::Relaxed);
                let _ = out.send(connack).await;
                if let Some((code, reference)) = &shared.faults.kick {
                    let _ = out
                        .send(frame(0xe0, &with_reference(*code, reference)))
                        .await;
                    break;
                }
            }
            8 => {
                let qos = *body.last().unwrap() & 3;
                let ack = if v5 {
                    vec![0x90, 4, body[0], body[1], 0, qos]
                } else {
                    vec![0x90, 3, body[0], body[1], qos]
                };
                shared.subscribers.lock().await.push(out.clone());
                shared.stats.subscribed.fetch_add(1, Ordering::Relaxed);
                let _ = out.send(ack).await;
            }
            3 => {
                let qos = (first >> 1) & 3;
                if qos > 0 {
                    let at = 2 + usize::from(u16::from_be_bytes([body[0], body[1]]));
                    let kind = if qos == 1 { 0x40 } else { 0x50 };
                    let _ = out.send(vec![kind, 2, body[at], body[at + 1]]).await;
                }
                on_publish(&shared, frame(first, &body)).await;
            }
            // PUBREC from a subscriber (QoS 2 delivery): release it.
            5 => {
                let _ = out.send(vec![0x62, 2, body[0], body[1]]).await;
            }
            // PUBREL from a publisher: complete it.
            6 => {
                let _ = out.send(vec![0x70, 2, body[0], body[1]]).await;
            }
            12 => {
                let _ = out.send(vec![0xd0, 0]).await;
            }
            14 => break,
            _ => {}
        }
    }
}

/// Parses `args` as a `loadtest` command line and plans it (a client subcommand).
pub fn plan(args: &[&str]) -> loadtest::plan::Plan {
    use clap::Parser;
    use loadtest::cli::{Cli, Command};
    let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let plan = match cli.command {
        Command::Conn(a) => a.plan(),
        Command::Sub(a) => a.plan(),
        Command::Pub(a) => a.plan(),
        Command::Storm(a) => a.plan(),
        other => panic!("not a client command: {other:?}"),
    };
    plan.unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

/// Runs a planned client subcommand in this process to its end.
pub async fn run(args: &[&str]) -> loadtest::figures::Figures {
    run_plan(plan(args)).await
}

/// Runs `plan` in this process to its end (bounded by the plan itself).
pub async fn run_plan(plan: loadtest::plan::Plan) -> loadtest::figures::Figures {
    let live = Arc::new(loadtest::live::Live::new());
    let (_trigger, stop) = loadtest::counters::stop_signal();
    loadtest::runner::run_plan(Arc::new(plan), live, stop)
        .await
        .unwrap()
}
