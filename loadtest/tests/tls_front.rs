//! loadtest's TLS client against meshmq's own server TLS stack (`shared::tls::ServerTls`,
//! what the ssl/wss listeners use: ticket resumption on, ALPN `mqtt`) terminating in front
//! of the real broker (in this process, port 0): `storm --tls-resume` resumes every
//! reconnect (each client its own session) and the server agrees, without it every handshake is full; `--sni` is the name
//! sent and checked; `--alpn` reaches the server; `fanout` runs over TLS and WSS with exact
//! counts; `storm --broker-pid` reports the broker's CPU and RSS.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use loadtest::cli::{Cli, Command};
use meshmq_shared::config::Config;
use meshmq_shared::config::tls::SslOptions;
use meshmq_shared::tls::ServerTls;
use meshmq_shared::tls::dev_ca::DevCa;
use replicant_node::{Broker, BrokerHandle};
use rustls::HandshakeKind;

mod support;
use support::run;

const BIN: &str = env!("CARGO_BIN_EXE_loadtest");

async fn broker(dir: &Path) -> BrokerHandle {
    let mut config = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listeners.mqtt_bind = any;
    config.listeners.ws_bind = Some(any);
    config.listeners.http_bind = None;
    config.cluster.peer_bind = any;
    config.node.data_dir = dir.join("data");
    Broker::builder(config).start().await.unwrap()
}

/// What the TLS front saw.
#[derive(Default)]
struct Seen {
    full: AtomicU64,
    resumed: AtomicU64,
    sni: Mutex<Vec<Option<String>>>,
    alpn: Mutex<Vec<Option<Vec<u8>>>>,
}

/// A dev CA and a server certificate for `broker.test` and `localhost` (not 127.0.0.1);
/// returns the CA file and the server TLS configuration.
fn certificates(dir: &Path) -> (PathBuf, Arc<ServerTls>) {
    let ca = DevCa::new("loadtest test CA").unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let (cert, key) = ca.server(&["broker.test", "localhost"]).unwrap();
    let (certfile, keyfile) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&certfile, cert).unwrap();
    std::fs::write(&keyfile, key).unwrap();
    let options = SslOptions {
        certfile: Some(certfile),
        keyfile: Some(keyfile),
        ..SslOptions::default()
    };
    (ca_file, ServerTls::load(&options, &["mqtt"]).unwrap())
}

/// Terminates TLS on a new loopback port and relays to `target`; records each handshake.
async fn front(tls: Arc<ServerTls>, target: SocketAddr) -> (u16, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, seen) = (tls.clone(), s.clone());
            tokio::spawn(async move {
                let accept = tls.acceptor().accept(tcp);
                let Ok(Ok(mut client)) = tokio::time::timeout(Duration::from_secs(5), accept).await
                else {
                    return;
                };
                let conn = client.get_ref().1;
                let counter = match conn.handshake_kind() {
                    Some(HandshakeKind::Resumed) => &seen.resumed,
                    _ => &seen.full,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                seen.sni
                    .lock()
                    .unwrap()
                    .push(conn.server_name().map(str::to_owned));
                seen.alpn
                    .lock()
                    .unwrap()
                    .push(conn.alpn_protocol().map(<[u8]>::to_vec));
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, seen)
}

struct Setup {
    dir: tempfile::TempDir,
    ca: String,
    _broker: BrokerHandle,
    /// TLS in front of the MQTT port.
    tls_port: String,
    tls_seen: Arc<Seen>,
    /// TLS in front of the WebSocket port.
    wss_port: String,
    wss_seen: Arc<Seen>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let (ca, tls) = certificates(dir.path());
    let (tls_port, tls_seen) = front(tls.clone(), b.mqtt_addr()).await;
    let (wss_port, wss_seen) = front(tls, b.ws_addr().unwrap()).await;
    Setup {
        ca: ca.to_str().unwrap().to_owned(),
        dir,
        _broker: b,
        tls_port: tls_port.to_string(),
        tls_seen,
        wss_port: wss_port.to_string(),
        wss_seen,
    }
}

fn storm_args<'a>(s: &'a Setup, port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "storm",
        "--tls",
        "--cafile",
        &s.ca,
        "-h",
        "localhost",
        "-p",
        port,
        "-c",
        "12",
        "-i",
        "0",
        "--cycles",
        "2",
        "--hold",
        "0.1",
        "--retries",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_resumes_every_reconnect_only_with_tls_resume() {
    let s = setup().await;

    let f = run(&storm_args(&s, &s.tls_port, &[])).await;
    assert_eq!(f.unconnected_at_end, 0, "{:?}", f.error_messages);
    assert_eq!((f.tls_full, f.tls_resumed), (36, 0));
    assert_eq!(s.tls_seen.resumed.load(Ordering::Relaxed), 0);
    assert_eq!(s.tls_seen.full.load(Ordering::Relaxed), 36);

    let f = run(&storm_args(&s, &s.tls_port, &["--tls-resume"])).await;
    assert_eq!(f.unconnected_at_end, 0, "{:?}", f.error_messages);
    // Each client's first connect is full; each reconnect resumes that client's session.
    let per_cycle: Vec<(u64, u64)> = f
        .cycles
        .iter()
        .map(|c| (c.tls_full, c.tls_resumed))
        .collect();
    assert_eq!(per_cycle, [(12, 0), (0, 12), (0, 12)]);
    assert_eq!((f.tls_full, f.tls_resumed), (12, 24));
    // The server agrees: the handshakes really were resumed.
    assert_eq!(s.tls_seen.resumed.load(Ordering::Relaxed), 24);
    assert_eq!(s.tls_seen.full.load(Ordering::Relaxed), 36 + 12);

    // The same over WSS (TLS, then the WebSocket upgrade, then MQTT).
    let f = run(&storm_args(&s, &s.wss_port, &["--ws", "--tls-resume"])).await;
    assert_eq!(f.unconnected_at_end, 0, "{:?}", f.error_messages);
    assert_eq!((f.tls_full, f.tls_resumed), (12, 24));
    assert_eq!(s.wss_seen.resumed.load(Ordering::Relaxed), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_is_the_name_sent_and_checked_and_alpn_reaches_the_server() {
    let s = setup().await;
    let conn = |host: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "conn",
            "--tls",
            "--cafile",
            &s.ca,
            "-h",
            host,
            "-p",
            &s.tls_port,
            "-c",
            "2",
            "-i",
            "0",
            "--duration",
            "0.3",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    // The certificate does not name 127.0.0.1: refused unless --sni names it.
    let refused = conn("127.0.0.1", &[]);
    let f = run(&argv(&refused)).await;
    assert_eq!((f.connected, f.connect_failures.get("tls")), (0, Some(&2)));
    let named = conn(
        "127.0.0.1",
        &["--sni", "broker.test", "--alpn", "mqtt,x-test"],
    );
    let f = run(&argv(&named)).await;
    assert_eq!(f.connected, 2, "{:?}", f.error_messages);
    let sni = s.tls_seen.sni.lock().unwrap().clone();
    let alpn = s.tls_seen.alpn.lock().unwrap().clone();
    assert_eq!(
        sni,
        [
            Some("broker.test".to_owned()),
            Some("broker.test".to_owned())
        ]
    );
    assert_eq!(alpn, [Some(b"mqtt".to_vec()), Some(b"mqtt".to_vec())]);
    // Without --alpn no protocol is negotiated; the host is the name sent.
    let f = run(&argv(&conn("localhost", &[]))).await;
    assert_eq!(f.connected, 2, "{:?}", f.error_messages);
    assert_eq!(
        s.tls_seen.sni.lock().unwrap()[2].as_deref(),
        Some("localhost")
    );
    assert_eq!(s.tls_seen.alpn.lock().unwrap()[2], None);
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn fanout(args: &[&str]) -> loadtest::FanoutConfig {
    let all = ["loadtest", "fanout"].iter().chain(args).copied();
    let Command::Fanout(a) = Cli::try_parse_from(all).unwrap().command else {
        panic!("not fanout")
    };
    a.to_config().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_tls_and_wss_counts_every_delivery() {
    let s = setup().await;
    for (port, ws) in [(&s.tls_port, false), (&s.wss_port, true)] {
        let mut args = vec![
            "--host",
            "localhost",
            "--port",
            port,
            "--tls",
            "--cafile",
            &s.ca,
            "--publishers",
            "2",
            "--subscribers",
            "3",
            "--rate",
            "400",
            "--warmup",
            "0.2",
            "--duration",
            "1",
        ];
        if ws {
            args.push("--ws");
        }
        let cfg = fanout(&args);
        assert_eq!(cfg.transport.name(), if ws { "wss" } else { "tls" });
        let report = loadtest::run_fanout(&cfg).await.unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.error_messages);
        assert!(report.published_total > 100, "{}", report.published_total);
        assert_eq!(report.delivered_total, report.published_total * 3);
    }
    assert_eq!(s.tls_seen.full.load(Ordering::Relaxed), 5);
    assert_eq!(s.wss_seen.full.load(Ordering::Relaxed), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_broker_pid_reports_cpu_and_rss_of_the_broker() {
    let s = setup().await;
    let json = s.dir.path().join("storm.json");
    let pid = std::process::id().to_string(); // the broker runs in this test process
    let mut args = storm_args(&s, &s.tls_port, &["--tls-resume", "--broker-pid", &pid]);
    args.extend(["--json", json.to_str().unwrap()]);
    let child = tokio::process::Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("loadtest ends in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("tls       12 full handshakes, 24 resumed"),
        "{text}"
    );
    assert!(
        text.contains(&format!("broker    pid {pid}: CPU ")),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let broker = &report["broker"];
    assert!(broker["cpu_secs"].as_f64().unwrap() > 0.0, "{broker}");
    let before = broker["rss_before_kib"].as_u64().unwrap();
    let peak = broker["rss_peak_kib"].as_u64().unwrap();
    assert!(before > 0 && peak >= before, "{broker}");
    assert_eq!(report["figures"]["tls_resumed"], 24);
    assert_eq!(report["cycles"][1]["tls_resumed"], 12);
    for cycle in report["figures"]["cycles"].as_array().unwrap() {
        assert!(cycle["broker_cpu_secs"].is_f64(), "{cycle}");
    }
    assert_eq!(s.tls_seen.resumed.load(Ordering::Relaxed), 24);
}
