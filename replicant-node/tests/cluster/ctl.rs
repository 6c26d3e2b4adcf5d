//! `replicant-node ctl` (the real binary) against an in-process cluster: a client of r2
//! (its id holds `/` and a space) is listed and shown through r1, gets a message published
//! by `ctl publish` on a filter `ctl subscriptions add` gave it, and is kicked; `config set`
//! shows in `config get`; `banned add` refuses the next CONNECT; `stats` counts the client;
//! a wrong key exits non-zero with the server's message and the key is never printed.

use std::net::SocketAddr;

use meshmq_shared::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use meshmq_shared::tables::BannedAs;
use serde_json::Value;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{unique, wait_until, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const KEY: &str = "ctl-test-key-0123456789";

/// How the key reaches the binary.
#[derive(Clone, Copy)]
enum Key<'a> {
    Flag(&'a str),
    Env(&'a str),
    File(&'a std::path::Path),
}

/// Runs `replicant-node ctl --api API ARGS...` to completion: (success, stdout, stderr).
async fn ctl(api: SocketAddr, key: Key<'_>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    cmd.env_remove("MESHMQ_CTL_API_KEY");
    cmd.arg("ctl").arg("--api").arg(api.to_string());
    match key {
        Key::Flag(k) => {
            cmd.arg("--api-key").arg(k);
        }
        Key::Env(k) => {
            cmd.env("MESHMQ_CTL_API_KEY", k);
        }
        Key::File(f) => {
            cmd.arg("--api-key-file").arg(f);
        }
    }
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run replicant-node ctl"))
        .await
        .expect("ctl task");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// Runs a command that must succeed; its stdout as JSON (`Null` when it is not JSON).
async fn ok(api: SocketAddr, args: &[&str]) -> (String, Value) {
    let (success, out, err) = ctl(api, Key::Env(KEY), args).await;
    assert!(success, "ctl {args:?}: {out} {err}");
    let v = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    (out, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drives_clients_publish_config_bans_and_stats() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    let api = r1.http_addr().expect("r1 http");
    let id = format!("{} x/y", unique("ctl"));
    let mut client = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &id).await;

    // clients list / show, through r1, for a client of r2.
    let listed = wait_until_async(WAIT, || async {
        let (_, v) = ok(api, &["clients", "list", "--like-clientid", "x/y"]).await;
        v["data"][0]["clientid"] == id.as_str()
    })
    .await;
    assert!(listed, "clients list shows {id}");
    let (_, shown) = ok(api, &["clients", "show", &id]).await;
    assert_eq!(
        (&shown["clientid"], &shown["node"]),
        (&Value::from(id.clone()), &Value::from("r2"))
    );

    // subscriptions add, then publish reaches the client.
    ok(api, &["subscriptions", "add", &id, "ctl/t/+", "--qos", "1"]).await;
    let (_, subs) = ok(api, &["subscriptions", "list", "--clientid", &id]).await;
    assert_eq!(subs["data"][0]["topic"], "ctl/t/+", "{subs}");
    let (_, published) = ok(api, &["publish", "ctl/t/1", "hello ctl", "--qos", "1"]).await;
    assert!(published["id"].is_string(), "{published}");
    let p = client.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("ctl/t/1", &b"hello ctl"[..])
    );
    client.ack(&p).await;

    // kick disconnects it.
    let (out, _) = ok(api, &["clients", "kick", &id]).await;
    assert_eq!(out.trim(), "ok");
    let seen = client.wait_closed(WAIT).await;
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
        "DISCONNECT 0x98, got {seen:?}"
    );

    // config set, then get shows it (the flag form of the key, this time).
    let (success, out, err) = ctl(
        api,
        Key::Flag(KEY),
        &["config", "set", "mqtt.max_inflight", "17"],
    )
    .await;
    assert!(success, "{out} {err}");
    let (_, mqtt) = ok(api, &["config", "get", "mqtt"]).await;
    assert_eq!(mqtt["max_inflight"], 17, "{mqtt}");
    let (success, _, err) = ctl(api, Key::Env(KEY), &["config", "set", "node.name", "\"x\""]).await;
    assert!(
        !success && err.contains("400") && err.contains("node.name"),
        "{err}"
    );

    // banned add refuses the next CONNECT.
    let banned = unique("ctl-banned");
    ok(
        api,
        &[
            "banned",
            "add",
            "--clientid",
            &banned,
            "--reason",
            "test",
            "--duration",
            "600",
        ],
    )
    .await;
    let applied = wait_until(WAIT, || {
        r1.core()
            .read(|t| t.banned(BannedAs::Clientid, &banned).is_some())
    })
    .await;
    assert!(applied);
    let (refused, ack) =
        RawClient::connect_with(r1.mqtt_addr(), connect_packet(ProtocolVersion::V5, &banned)).await;
    assert_eq!(ack.code, ReasonCode::Banned);
    drop(refused);
    let (_, bans) = ok(api, &["banned", "list"]).await;
    assert_eq!(bans["data"][0]["who"], banned.as_str(), "{bans}");
    ok(api, &["banned", "del", "clientid", &banned]).await;

    // stats: r1's own connection is counted on r1.
    let mut on_r1 = RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("ctl-s")).await;
    on_r1.subscribe("ctl/s", QoS::AtMostOnce).await;
    let counted = wait_until_async(WAIT, || async {
        let (_, stats) = ok(api, &["stats", "--node", "r1"]).await;
        stats[0]["connections.count"] == 1 && stats[0]["subscriptions.count"] == 1
    })
    .await;
    assert!(
        counted,
        "ctl stats counts r1's one connection and subscription"
    );
    // The key from a file (first line), as the standalone node writes it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("key.conf");
    std::fs::write(&file, format!("{KEY}\n")).expect("key file");
    let (success, out, err) = ctl(api, Key::File(&file), &["metrics", "--aggregate"]).await;
    assert!(success, "{out} {err}");
    let metrics: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert!(metrics["messages.received"].is_u64(), "{metrics}");

    // A wrong key: non-zero exit, the server's message, no key printed.
    let wrong = "wrong-key-9876543210";
    let (success, out, err) = ctl(api, Key::Flag(wrong), &["clients", "list"]).await;
    assert!(!success, "{out}");
    assert!(err.contains("401") && err.contains("UNAUTHORIZED"), "{err}");
    assert!(!err.contains(wrong) && !out.contains(wrong), "{err}");
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
