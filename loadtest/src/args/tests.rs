//! Tests of the flags and their validation.

use super::*;
use crate::cli::{Cli, Command};
use crate::plan::{Job, Plan};
use crate::wire::MqttVersion;
use clap::Parser;

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied())).map(|c| c.command)
}

fn plan(args: &[&str]) -> anyhow::Result<Plan> {
    match parse(args)? {
        Command::Conn(a) => a.plan(),
        Command::Sub(a) => a.plan(),
        Command::Pub(a) => a.plan(),
        Command::Storm(a) => a.plan(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn emqtt_bench_spelling() {
    let p = plan(&[
        "pub",
        "-h",
        "127.0.0.1,localhost:1999",
        "-p",
        "1884",
        "-V",
        "4",
        "-c",
        "7",
        "-i",
        "0",
        "-t",
        "t/%i",
        "-q",
        "2",
        "-s",
        "64",
        "-I",
        "5",
        "-L",
        "10",
        "-F",
        "4",
        "-k",
        "30",
        "-C",
        "false",
        "-u",
        "me",
        "-P",
        "pw",
        "--prefix",
        "x",
    ])
    .unwrap();
    let hosts: Vec<String> = p.endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(hosts, ["127.0.0.1:1884", "localhost:1999"]);
    assert_eq!(p.opts.version, MqttVersion::V311);
    assert_eq!((p.clients.clone(), p.connect_rate), (0..7, None));
    assert!(!p.opts.clean_start);
    assert_eq!(p.opts.keep_alive, 30);
    assert_eq!(p.client_id(3), "x_pub_3");
    let Job::Pub(spec) = &p.job else { panic!() };
    assert_eq!(
        (spec.qos, spec.size, spec.limit, spec.inflight),
        (2, 64, Some(10), 4)
    );
    assert_eq!(spec.interval, Duration::from_millis(5));
    let p = plan(&["conn", "--duration", "1", "-c", "10", "--rate", "100", "-C"]).unwrap();
    assert!(p.opts.clean_start);
    assert_eq!(p.connect_rate, Some(100.0));
    let p = plan(&["sub", "-t", "a/#", "-L", "5", "-x", "60", "-i", "20"]).unwrap();
    assert_eq!(p.opts.session_expiry, Some(60));
    assert_eq!(p.connect_rate, Some(50.0));
}

#[test]
fn unbounded_or_remote_runs_are_refused() {
    for bad in [
        &["conn", "-c", "1"][..],
        &["sub", "-t", "a"],
        &["pub", "-t", "a"],
        &["pub", "-t", "a/#", "-L", "1"],
        &["pub", "-t", "a", "-L", "1", "-s", "31"],
        &["conn", "--duration", "1", "-h", "10.0.0.1"],
        &["conn", "--duration", "1", "-h", "127.0.0.1,example.com"],
        &["conn", "--duration", "1", "-V", "4", "-x", "5"],
        &["conn", "--duration", "1", "--cafile", "/x"],
        &["conn", "--duration", "1", "-c", "2", "--workers", "3"],
        &["storm", "--cycles", "1", "--duration", "3"],
    ] {
        assert!(plan(bad).is_err(), "{bad:?}");
    }
    assert!(parse(&["storm"]).is_err(), "--cycles is required");
    assert!(
        plan(&[
            "conn",
            "--duration",
            "1",
            "-h",
            "10.0.0.1",
            "--allow-remote"
        ])
        .is_ok()
    );
}

#[test]
fn help_is_long_only_and_workers_split() {
    let e = parse(&["conn", "--help"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    let p = plan(&[
        "conn",
        "--duration",
        "1",
        "-c",
        "10",
        "--rate",
        "100",
        "--workers",
        "2",
        "--worker-of",
        "1",
    ])
    .unwrap();
    assert_eq!((p.clients.clone(), p.connect_rate), (5..10, Some(50.0)));
    let p = plan(&[
        "storm",
        "--cycles",
        "2",
        "-c",
        "10",
        "--drop-rate",
        "10",
        "--workers",
        "2",
        "--worker-of",
        "0",
        "--worker-range",
        "0..4",
    ])
    .unwrap();
    assert_eq!(p.clients, 0..4);
    let Job::Storm(spec) = p.job else { panic!() };
    assert_eq!(spec.drop_rate, Some(5.0));
}

#[test]
fn tls_flags_need_tls_and_are_checked() {
    let storm = |extra: &[&str]| {
        let mut args = vec!["storm", "-c", "2", "--cycles", "1"];
        args.extend_from_slice(extra);
        plan(&args)
    };
    for alone in [
        &["--tls-resume"][..],
        &["--sni", "broker.test"],
        &["--alpn", "mqtt"],
    ] {
        let err = storm(alone).unwrap_err().to_string();
        assert!(err.contains("need --tls"), "{alone:?}: {err}");
    }
    let p = storm(&[
        "--tls",
        "--insecure",
        "--tls-resume",
        "--sni",
        "broker.test",
        "--alpn",
        "mqtt,mqttv3.1",
        "--ws",
    ])
    .unwrap();
    assert_eq!(p.opts.transport.name(), "wss");
    assert_eq!(p.tls_handshakes(), Default::default());
    for bad in [
        &["--tls", "--insecure", "--sni", "not a name"][..],
        &["--tls", "--insecure", "--alpn", "mqtt,"],
    ] {
        assert!(storm(bad).is_err(), "{bad:?}");
    }
    let long = "x".repeat(256);
    assert!(storm(&["--tls", "--insecure", "--alpn", &long]).is_err());
}

#[test]
fn broker_pid_is_a_list_on_every_client_command() {
    let Command::Storm(a) = parse(&["storm", "--cycles", "1", "--broker-pid", "7,8"]).unwrap()
    else {
        panic!("not storm")
    };
    assert_eq!(a.common.broker_pid, [7, 8]);
    let Command::Conn(a) = parse(&["conn", "--duration", "1"]).unwrap() else {
        panic!("not conn")
    };
    assert!(a.common.broker_pid.is_empty());
    assert!(parse(&["storm", "--cycles", "1", "--broker-pid", "x"]).is_err());
}

#[test]
fn fanout_takes_the_transport_flags() {
    let Command::Fanout(a) =
        parse(&["fanout", "--tls", "--insecure", "--ws", "--ws-path", "/m"]).unwrap()
    else {
        panic!("not fanout")
    };
    let cfg = a.to_config().unwrap();
    assert_eq!(cfg.transport.name(), "wss");
    assert_eq!(cfg.transport.ws_path.as_deref(), Some("/m"));
    let Command::Fanout(a) = parse(&["fanout", "--tls-resume"]).unwrap() else {
        panic!("not fanout")
    };
    assert!(a.to_config().is_err());
}
