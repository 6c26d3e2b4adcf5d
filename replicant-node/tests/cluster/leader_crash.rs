//! A core leader that dies without a word (SIGKILL of a real process: no QUIC close, no
//! Raft hand-off) while a client subscribes to a new topic every 100 ms: every SUBACK
//! still grants, arrives within 2 s of its SUBSCRIBE, and follows a committed route (a
//! message published on the other replicant right after it is delivered).
//!
//! The three cores run as child processes of this test binary (it runs itself with the
//! ignored test [`core_process`] selected, which starts one `CoreNode`), so that killing
//! one is a real process death; the replicants run in this process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use core_node::node::{CoreConfig, CoreNode, batcher::GroupCommit};
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Packet, Properties, QoS, ReasonCode, Subscribe};
use meshmq_shared::quic::certs::{self, CertPaths};
use meshmq_shared::quic::tls::Identity;
use replicant_node::core_link::pick::{Dialer, status};

use crate::common::raw::{RawClient, sub_opts};
use crate::common::{test_config, unique};
use crate::harness::{WAIT, fast_timings, serial};

/// Environment of a child core: `id;bind;data dir;certs dir;id=addr,id=addr,...`.
const CORE_ENV: &str = "MESHMQ_TEST_CORE_PROCESS";

/// Not a test: the body of a core child process (see the module doc). Without
/// [`CORE_ENV`] it returns at once.
#[tokio::test]
#[ignore = "runs only as a child process of leader_crash"]
async fn core_process() {
    let Ok(spec) = std::env::var(CORE_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(';').collect();
    let id: u64 = parts[0].parse().expect("node id");
    let members = parts[4]
        .split(',')
        .map(|m| {
            let (i, a) = m.split_once('=').expect("id=addr");
            (i.parse().expect("member id"), a.to_owned())
        })
        .collect();
    let cfg = CoreConfig {
        node_id: id,
        core_bind: parts[1].parse().expect("bind"),
        advertise: None,
        data_dir: parts[2].into(),
        initial_members: members,
        certs: CertPaths::in_dir(std::path::Path::new(parts[3]), &format!("core-{id}")),
        timings: fast_timings(),
        group_commit: GroupCommit::default(),
        follow: core_node::node::follow::FollowLimits::default(),
    };
    let core = CoreNode::start(cfg).await.expect("core starts");
    println!("CORE-READY {}", core.addr);
    std::future::pending::<()>().await;
}

/// A core running as a child process; killed (SIGKILL) on drop.
struct CoreProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for CoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    s.local_addr().expect("local addr").port()
}

fn spawn_core(
    id: u64,
    bind: SocketAddr,
    data: &std::path::Path,
    certs: &std::path::Path,
    members: &str,
) -> CoreProcess {
    let spec = format!(
        "{id};{bind};{};{};{members}",
        data.display(),
        certs.display()
    );
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "leader_crash::core_process",
            "--nocapture",
        ])
        .env(CORE_ENV, spec)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("core child starts");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    for line in out.lines() {
        let line = line.expect("child stdout");
        if let Some(addr) = line.strip_prefix("CORE-READY ") {
            let addr = addr.parse().expect("core address");
            return CoreProcess { child, addr };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("core {id} exited before it was ready");
}

/// The leader's id as every live core in `addrs` reports it, once they agree.
async fn agreed_leader(dialer: &Dialer, addrs: &[SocketAddr]) -> u64 {
    let end = Instant::now() + WAIT;
    loop {
        let mut seen = Vec::new();
        for &a in addrs {
            if let Ok((_, s)) = status(dialer, a).await {
                seen.push(s.leader_id);
            }
        }
        if let Some(Some(l)) = seen.first().copied()
            && seen.len() == addrs.len()
            && seen.iter().all(|s| *s == Some(l))
        {
            return l;
        }
        assert!(Instant::now() < end, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_keep_their_promise_through_a_leader_crash() {
    let _serial = serial().await;
    let certs = tempfile::tempdir().expect("certs dir");
    let names: Vec<String> = ["core-1", "core-2", "core-3", "r1", "r2", "tester"]
        .map(String::from)
        .to_vec();
    certs::generate(certs.path(), &names).expect("certificates");
    let binds: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_udp_port())))
        .collect();
    let members: Vec<String> = binds
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{}={b}", i + 1))
        .collect();
    let members = members.join(",");
    let data: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("data")).collect();
    let mut cores: Vec<Option<CoreProcess>> = (0..3)
        .map(|i| {
            Some(spawn_core(
                i as u64 + 1,
                binds[i],
                data[i].path(),
                certs.path(),
                &members,
            ))
        })
        .collect();
    let addrs: Vec<SocketAddr> = cores.iter().flatten().map(|c| c.addr).collect();
    let identity =
        Identity::load(&CertPaths::in_dir(certs.path(), "tester")).expect("tester identity");
    let dialer = Dialer::new(identity, meshmq_shared::wire_version::WireVersion::CURRENT);
    let leader = agreed_leader(&dialer, &addrs).await;

    let replicant = |name: &str| {
        let mut c = test_config();
        c.node.name = name.to_owned();
        c.cluster.cores = addrs.iter().map(ToString::to_string).collect();
        c.cluster.certs_dir = Some(certs.path().to_owned());
        c
    };
    let r1 = replicant_node::start(replicant("r1")).await.expect("r1");
    let r2 = replicant_node::start(replicant("r2")).await.expect("r2");
    let mut sub = RawClient::connect(r1.mqtt_addr(), V5, &unique("crash-sub")).await;
    let mut publisher = RawClient::connect(r2.mqtt_addr(), V5, &unique("crash-pub")).await;

    let mut worst = Duration::ZERO;
    let mut killed_at = None;
    for round in 0..40u16 {
        if round == 10 {
            let victim = cores[(leader - 1) as usize].take().expect("leader process");
            drop(victim); // SIGKILL
            killed_at = Some(Instant::now());
        }
        let topic = format!("{}/{round}", unique("crash"));
        let asked = Instant::now();
        sub.send(&Packet::Subscribe(Subscribe {
            packet_id: round + 1,
            filters: vec![(topic.clone(), sub_opts(QoS::AtLeastOnce))],
            properties: Properties::default(),
        }))
        .await;
        let ack = sub
            .recv_where(WAIT, |p| match p {
                Packet::SubAck(a) if a.packet_id == round + 1 => Some(a.clone()),
                _ => None,
            })
            .await
            .unwrap_or_else(|e| panic!("round {round}: no SUBACK: {e:?}"));
        let took = asked.elapsed();
        worst = worst.max(took);
        assert_eq!(
            ack.reasons,
            [ReasonCode::GrantedQoS1],
            "round {round}: {ack:?}"
        );
        // The route is committed and known on r2: a message published there arrives.
        publisher
            .publish(&topic, "m", QoS::AtLeastOnce, false)
            .await;
        let p = sub.recv_publish().await;
        assert_eq!(
            p.topic, topic,
            "round {round}: the message after the SUBACK"
        );
        sub.ack(&p).await;
        eprintln!("round {round}: SUBACK after {took:?}");
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(asked.elapsed())).await;
    }
    let killed_at = killed_at.expect("the leader was killed");
    assert!(
        worst <= Duration::from_secs(2),
        "the slowest SUBACK took {worst:?} (leader killed {:?} before the end)",
        killed_at.elapsed()
    );
    r1.shutdown().await;
    r2.shutdown().await;
    drop(cores);
}
