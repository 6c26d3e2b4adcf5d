//! Evacuation of a replicant: clients on r1 (half MQTT 5, half 3.1.1; clean,
//! persistent and connected, persistent and offline with queued QoS 1 messages) while r1 is
//! evacuated to r2/r3 through the `load_rebalance` API. Raw MQTT bytes, so reason codes and
//! properties are exact.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshmq_shared::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use replicant_node::BrokerHandle;
use tokio::task::JoinSet;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{http_get, http_post, metric_sum, metrics_text, unique, wait_until_async};
use crate::harness::{Cluster, fast_timings, serial};

/// Server Reference the evacuation sends.
pub(crate) const REDIRECT: &str = "r2.example:1883";
/// QoS 1 messages published to every persistent session before the evacuation.
pub(crate) const K: u32 = 3;
pub(crate) const API: &str = "/api/v5/load_rebalance";

/// What a client is in the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Clean session, connected when the evacuation starts.
    Clean,
    /// Persistent session, connected (its K messages in flight, unacknowledged).
    Connected,
    /// Persistent session, offline (its K messages queued on r1).
    Offline,
}

#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) id: String,
    pub(crate) version: ProtocolVersion,
    pub(crate) kind: Kind,
}

impl Spec {
    fn connect(&self, clean_start: bool) -> Connect {
        let mut c = connect_packet(self.version, &self.id);
        c.clean_start = clean_start;
        if self.version.is_v5() && self.kind != Kind::Clean {
            c.properties.session_expiry_interval = Some(3600);
        }
        c
    }
}

/// `n` clients: every other one MQTT 5; by pairs, two clean, one persistent connected, one
/// persistent offline (n/2 clean, n/4 of each persistent kind).
pub(crate) fn specs(run: &str, n: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            id: format!("{run}-{i}"),
            version: if i % 2 == 0 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V311
            },
            kind: match (i / 2) % 4 {
                0 | 1 => Kind::Clean,
                2 => Kind::Connected,
                _ => Kind::Offline,
            },
        })
        .collect()
}

/// Connects every client to `addr` (persistent ones subscribe to `filter` at QoS 1), then
/// takes the offline ones away again. The connected clients are returned.
pub(crate) async fn populate(
    addr: SocketAddr,
    specs: &[Spec],
    filter: &str,
) -> Vec<(Spec, RawClient)> {
    let mut connected = Vec::new();
    for chunk in specs.chunks(100) {
        let mut set = JoinSet::new();
        for s in chunk.iter().cloned() {
            let filter = filter.to_owned();
            set.spawn(async move {
                let persistent = s.kind != Kind::Clean;
                let (mut c, ack) = RawClient::connect_with(addr, s.connect(!persistent)).await;
                assert_eq!(ack.code, ReasonCode::Success, "{}: {ack:?}", s.id);
                if persistent {
                    c.subscribe(&filter, QoS::AtLeastOnce).await;
                }
                if s.kind == Kind::Offline {
                    c.disconnect(ReasonCode::Success).await;
                    None
                } else {
                    Some((s, c))
                }
            });
        }
        while let Some(r) = set.join_next().await {
            connected.extend(r.expect("client task"));
        }
    }
    connected
}

/// [`specs`] of `n` clients named after `prefix`, connected through `addr` by [`populate`],
/// then [`publish_k`] through `addr` itself (acknowledged once every local session has the
/// messages, queued or sent). The specs and the clients still connected.
pub(crate) async fn loaded(
    addr: SocketAddr,
    prefix: &str,
    n: usize,
) -> (Vec<Spec>, Vec<(Spec, RawClient)>) {
    let run = unique(prefix);
    let topic = format!("{prefix}/{run}/q");
    let specs = specs(&run, n);
    let connected = populate(addr, &specs, &topic).await;
    publish_k(addr, &topic).await;
    (specs, connected)
}

/// Publishes `K` QoS 1 messages (payload = sequence number) to `topic` through `addr`,
/// then disconnects.
pub(crate) async fn publish_k(addr: SocketAddr, topic: &str) {
    let mut p = RawClient::connect(addr, ProtocolVersion::V5, &unique("ev-pub")).await;
    for seq in 0..K {
        let code = p
            .publish(topic, &seq.to_string(), QoS::AtLeastOnce, false)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    p.disconnect(ReasonCode::Success).await;
}

/// Waits for the eviction of a connected client: MQTT 5 must get DISCONNECT 0x9C with the
/// Server Reference before the close; 3.1.1 just a close. PUBLISHes before it are ignored
/// (they were in flight and are not acknowledged).
pub(crate) async fn expect_evicted(s: &Spec, mut c: RawClient) {
    let seen = c.wait_closed(Duration::from_secs(120)).await;
    let disconnects: Vec<_> = seen
        .iter()
        .filter_map(|p| match p {
            Packet::Disconnect(d) => Some(d.clone()),
            Packet::Publish(_) => None,
            other => panic!("{}: unexpected {other:?} before the close", s.id),
        })
        .collect();
    if s.version.is_v5() {
        assert_eq!(disconnects.len(), 1, "{}: {seen:?}", s.id);
        assert_eq!(
            disconnects[0].reason,
            ReasonCode::UseAnotherServer,
            "{}",
            s.id
        );
        assert_eq!(
            disconnects[0].properties.server_reference.as_deref(),
            Some(REDIRECT),
            "{}",
            s.id
        );
    } else {
        assert!(disconnects.is_empty(), "{}: {seen:?}", s.id);
    }
}

/// One task per connected client: it waits for its eviction (see [`expect_evicted`]) and,
/// for a persistent session, resumes it through `targets` (alternately) with its messages.
pub(crate) fn await_evictions(
    connected: Vec<(Spec, RawClient)>,
    targets: [SocketAddr; 2],
) -> JoinSet<()> {
    let mut clients = JoinSet::new();
    for (i, (s, c)) in connected.into_iter().enumerate() {
        let to = targets[i % 2];
        clients.spawn(async move {
            expect_evicted(&s, c).await;
            if s.kind == Kind::Connected {
                resume(to, &s).await;
            }
        });
    }
    clients
}

/// Reconnects a persistent client through `addr`: session present, and its K messages.
pub(crate) async fn resume(addr: SocketAddr, s: &Spec) {
    let (mut c, ack) = RawClient::connect_with(addr, s.connect(false)).await;
    assert_eq!(ack.code, ReasonCode::Success, "{}: {ack:?}", s.id);
    assert!(ack.session_present, "{}: session present expected", s.id);
    let mut seqs = BTreeSet::new();
    while seqs.len() < K as usize {
        let p = c.recv_publish().await;
        c.ack(&p).await;
        let seq: u32 = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{}: payload {:?}", s.id, p.payload));
        seqs.insert(seq);
    }
    assert_eq!(seqs, (0..K).collect::<BTreeSet<_>>(), "{}", s.id);
    c.disconnect(ReasonCode::Success).await;
}

pub(crate) async fn status_of(node: &BrokerHandle) -> serde_json::Value {
    let (code, body) = http_get(http(node), &format!("{API}/status")).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

pub(crate) fn http(node: &BrokerHandle) -> SocketAddr {
    node.http_addr().expect("http listener")
}

pub(crate) async fn availability(node: &BrokerHandle) -> u16 {
    http_get(http(node), &format!("{API}/availability_check"))
        .await
        .0
}

/// Waits (bounded) until `node`'s status reports `state`.
pub(crate) async fn wait_state(
    node: &BrokerHandle,
    state: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let last = status_of(node).await;
        if last["state"] == state {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "state {state} not reached in {within:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new CONNECT to an evacuated node is refused: MQTT 5 with 0x9C and the Server
/// Reference, 3.1.1 with return code 3 (server unavailable).
pub(crate) async fn expect_refused(addr: SocketAddr) {
    let c5 = connect_packet(ProtocolVersion::V5, &unique("ev-new5"));
    let (_, ack) = RawClient::connect_with(addr, c5).await;
    assert_eq!(ack.code, ReasonCode::UseAnotherServer, "{ack:?}");
    assert_eq!(ack.properties.server_reference.as_deref(), Some(REDIRECT));
    let c3 = connect_packet(ProtocolVersion::V311, &unique("ev-new3"));
    let (_, ack) = RawClient::connect_with(addr, c3).await;
    assert_eq!(ack.code, ReasonCode::ServerUnavailable, "{ack:?}");
}

fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(text, name, labels).unwrap_or(0.0)
}

/// 2 000 clients on r1 (1 000 clean, 500 persistent connected with 3 QoS 1 messages in
/// flight, 500 persistent offline with 3 queued), evacuated to r2/r3 at 500/s: every MQTT 5
/// client gets 0x9C with the Server Reference; every persistent session resumes on r2 or r3
/// with session present and all its messages; the eviction takes 1 500 / 500 = 3 s (±20%);
/// status, global status and metrics show the counts; stop makes r1 available again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuation_moves_2000_clients_and_every_queued_message() {
    const N: usize = 2_000;
    const RATE: f64 = 500.0;
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let (specs, connected) = loaded(r1.mqtt_addr(), "ev", N).await;
    assert_eq!(connected.len(), N * 3 / 4);
    // The publisher's DISCONNECT is processed after its client returns: its session may
    // still be ending here (seen under CPU load), so wait for it with a deadline.
    let settled = wait_until_async(Duration::from_secs(10), || async {
        r1.connections() == N * 3 / 4 && r1.sessions() == N
    })
    .await;
    assert_eq!(r1.sessions(), N, "every session held on r1");
    assert!(
        settled,
        "the publisher's connection is gone: {}",
        r1.connections()
    );
    let before = metrics_text(&r1).await;

    assert_eq!(availability(&r1).await, 200);
    let body = format!(
        r#"{{"wait_health_check": 1, "conn_evict_rate": {RATE}, "sess_evict_rate": 500,
            "redirect_to": "{REDIRECT}", "wait_takeover": 3, "migrate_to": ["r2", "r3"]}}"#
    );
    // Any node's API starts any node's evacuation.
    let (code, answer) = http_post(http(&r2), &format!("{API}/r1/evacuation/start"), &body).await;
    assert_eq!(code, 200, "{answer}");
    let (code, again) = http_post(http(&r3), &format!("{API}/r1/evacuation/start"), &body).await;
    assert_eq!(code, 409, "a second start conflicts: {again}");

    let targets = [r2.mqtt_addr(), r3.mqtt_addr()];
    let mut clients = await_evictions(connected, targets);
    let unavailable = wait_until_async(Duration::from_secs(10), || async {
        availability(&r1).await == 503
    })
    .await;
    assert!(unavailable, "r1's availability check turns 503");
    assert_eq!(availability(&r2).await, 200);
    while let Some(r) = clients.join_next().await {
        r.expect("evicted client, persistent ones resumed elsewhere");
    }
    expect_refused(r1.mqtt_addr()).await;

    let done = wait_state(&r1, "prohibiting", Duration::from_secs(90)).await;
    let stats = &done["stats"];
    assert_eq!(stats["evicted_connections"], N * 3 / 4, "{done}");
    assert_eq!(stats["migrated_sessions"], N / 4, "{done}");
    assert_eq!(stats["initial_connected"], N * 3 / 4, "{done}");
    let took = done["connection_eviction_secs"]
        .as_f64()
        .expect("eviction time");
    let closed = done["connections_closed_secs"]
        .as_f64()
        .expect("close time");
    // The last of 1 500 evictions at 500/s is due 1 499 / 500 s after the first.
    let expected = (N * 3 / 4 - 1) as f64 / RATE;
    println!(
        "evicted {} connections in {took:.2} s (rate {RATE}/s: {expected:.2} s); all closed after {closed:.2} s",
        N * 3 / 4
    );
    assert!(closed >= took, "{done}");
    assert!(
        (expected * 0.8..=expected * 1.2).contains(&took),
        "eviction took {took:.2} s, expected {expected:.2} s ±20%"
    );
    assert_eq!(r1.sessions(), 0, "every session left r1");
    // Offline sessions now live on r2/r3: their clients find them (either node).
    let offline: Vec<_> = specs
        .iter()
        .filter(|s| s.kind == Kind::Offline)
        .cloned()
        .collect();
    let mut resumes = JoinSet::new();
    for (i, s) in offline.into_iter().enumerate() {
        let to = targets[(i + 1) % 2];
        resumes.spawn(async move { resume(to, &s).await });
        if resumes.len() >= 100 {
            resumes.join_next().await.expect("task").expect("resumed");
        }
    }
    while let Some(r) = resumes.join_next().await {
        r.expect("offline session resumed");
    }
    expect_refused(r1.mqtt_addr()).await;

    let after = metrics_text(&r1).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        counter(&after, name, labels) - counter(&before, name, labels)
    };
    assert_eq!(
        delta("meshmq_evacuation_connections_evicted_total", &[]),
        (N * 3 / 4) as f64
    );
    assert_eq!(
        delta(
            "meshmq_evacuation_sessions_migrated_total",
            &[("result", "migrated")]
        ),
        (N / 4) as f64
    );
    assert_eq!(
        delta(
            "meshmq_evacuation_sessions_adopted_total",
            &[("result", "ok")]
        ),
        (N / 4) as f64
    );
    let (code, global) = http_get(http(&r3), &format!("{API}/global_status")).await;
    assert_eq!(code, 200);
    let global: serde_json::Value = serde_json::from_str(&global).expect("JSON");
    assert_eq!(global["evacuations"][0]["node"], "r1", "{global}");
    assert_eq!(global["evacuations"][0]["state"], "prohibiting", "{global}");

    let (code, answer) = http_post(http(&r3), &format!("{API}/r1/evacuation/stop"), "").await;
    assert_eq!(code, 200, "{answer}");
    let back = wait_until_async(Duration::from_secs(10), || async {
        availability(&r1).await == 200
    })
    .await;
    assert!(back, "r1 available again after stop");
    RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("ev-back")).await;
    assert_eq!(status_of(&r1).await["status"], "disabled");
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

/// The API's answers: 404 unknown node, 400 for bad fields or targets, 409 twice, 400 to
/// stop what is not running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuation_api_refuses_what_it_cannot_do() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = "s3cret-evacuation-key";
    let r1 = cluster
        .start_replicant_with("r1", |c| c.listeners.api_key = Some(key.into()))
        .await;
    // Whether a key is needed is decided for the cluster: r2 needs one too (its own).
    let r2 = cluster
        .start_replicant_with("r2", |c| c.listeners.api_key = Some(key.into()))
        .await;
    // r1 wants its API key on operator routes; its availability check stays open.
    let (code, answer) = http_post(http(&r1), &format!("{API}/r2/evacuation/start"), "{}").await;
    assert_eq!(code, 401, "{answer}");
    assert_eq!(http_get(http(&r1), &format!("{API}/status")).await.0, 401);
    assert_eq!(availability(&r1).await, 200);
    let out = ctl(http(&r1), &["--api-key", key, "rebalance", "node-status"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("disabled"),
        "{out:?}"
    );
    let api = http(&r2);
    let start = |node: &str| format!("{API}/{node}/evacuation/start");
    let cases: [(&str, &str, u16); 6] = [
        ("nope", "{}", 404),
        ("r1", "not json", 400),
        ("r1", r#"{"conn_evict_rate": 0}"#, 400),
        ("r1", r#"{"migrate_to": ["r1"]}"#, 400),
        ("r1", r#"{"migrate_to": ["r9"]}"#, 400),
        ("r1", r#"{"colour": "blue"}"#, 400),
    ];
    for (node, body, want) in cases {
        let (code, answer) = post_key(api, &start(node), body).await;
        assert_eq!(code, want, "{node} {body}: {answer}");
        assert!(answer.contains("message"), "{answer}");
    }
    let (code, answer) = post_key(api, &format!("{API}/r1/evacuation/stop"), "").await;
    assert_eq!(code, 400, "{answer}");
    // Started from a shell: `replicant-node ctl ... rebalance start --evacuation`.
    let out = ctl(
        api,
        &[
            "--api-key",
            key,
            "rebalance",
            "start",
            "--evacuation",
            "--node",
            "r2",
            "--wait-health-check",
            "3600",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"wait_health_check\":3600"),
        "{out:?}"
    );
    let (code, answer) = post_key(api, &start("r1"), r#"{"migrate_to": ["r2"]}"#).await;
    assert_eq!(code, 400, "an evacuating node is no target: {answer}");
    let (code, _) = post_key(api, &start("r2"), "{}").await;
    assert_eq!(code, 409);
    let again = ctl(
        api,
        &[
            "--api-key",
            key,
            "rebalance",
            "start",
            "--evacuation",
            "--node",
            "r2",
        ],
    )
    .await;
    assert!(
        !again.status.success(),
        "the CLI reports the conflict: {again:?}"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("409"),
        "{again:?}"
    );
    // During wait_health_check: 503 at once, CONNECTs still accepted.
    let unavailable = wait_until_async(Duration::from_secs(10), || async {
        availability(&r2).await == 503
    })
    .await;
    assert!(unavailable);
    let (code, body) =
        crate::common::http_call(api, "GET", &format!("{API}/status"), "", Some(key)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("waiting_health_check"), "{body}");
    RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("ev-hc")).await;
    let (code, answer) = post_key(api, &format!("{API}/r2/evacuation/stop"), "").await;
    assert_eq!(code, 200, "{answer}");
    for r in [r1, r2] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

/// `POST path` with `body` and the static key of `evacuation_api_refuses_what_it_cannot_do`.
async fn post_key(api: SocketAddr, path: &str, body: &str) -> (u16, String) {
    crate::common::http_call(api, "POST", path, body, Some("s3cret-evacuation-key")).await
}

/// Runs `replicant-node ctl --api ADDR ARGS...` (the real binary) to completion.
async fn ctl(api: SocketAddr, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    cmd.arg("ctl").arg("--api").arg(api.to_string()).args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run replicant-node ctl"))
        .await
        .expect("ctl task")
}
