//! Start-up failures of the real `replicant-node` binary: a port in use, a missing or
//! invalid config file, a certificate directory with garbage in it. Each must end the
//! process with a non-zero exit code and exactly one line on stderr, `error: ...`, naming
//! the setting (key and environment variable) and the cause, without a backtrace unless
//! `RUST_BACKTRACE` asks for one.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Bound on one run of the binary (it fails during start-up).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `replicant-node` with `args` (every listener on port 0 unless `args` says
/// otherwise, data in `data`), without `RUST_LOG` and `RUST_BACKTRACE` unless `env` sets
/// them; kills it if it is still running after [`RUN_LIMIT`].
fn run(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    let data = data.to_str().expect("utf-8 temp path");
    cmd.args(["--data-dir", data])
        .args(["--ws-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        // Logs go to stdout: not read, so they cannot fill a pipe and block the child.
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Every MESHMQ_ variable of the test's own environment would change the run.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MESHMQ_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn replicant-node");
    let end = Instant::now() + RUN_LIMIT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {RUN_LIMIT:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20)); // polling a child process, bounded
    }
}

/// Asserts a failed start: non-zero exit, one `error:` line on stderr containing each of
/// `wanted`, no backtrace. Returns the line.
fn assert_one_error_line(out: &Output, wanted: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "exit {:?}; stderr: {stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for w in wanted {
        assert!(line.contains(w), "{line:?} does not name {w:?}");
    }
    assert!(
        !stderr.to_ascii_lowercase().contains("backtrace"),
        "no backtrace unless asked: {stderr}"
    );
    line.to_owned()
}

#[test]
fn mqtt_port_in_use_names_the_listener_setting() {
    let data = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(data.path(), &["--mqtt-bind", &addr], &[]);
    assert_one_error_line(
        &out,
        &[
            "MQTT listener",
            &addr,
            "listeners.mqtt_bind / MESHMQ_LISTENERS__MQTT_BIND",
            "in use",
        ],
    );
}

#[test]
fn missing_or_invalid_config_file_names_the_file_or_the_key() {
    let data = tempfile::tempdir().expect("tempdir");
    let missing = data.path().join("nope.toml");
    let missing = missing.to_str().expect("utf-8");
    let out = run(data.path(), &["--config", missing], &[]);
    assert_one_error_line(&out, &["config file", missing, "(--config)"]);

    let bad_value = data.path().join("bad.toml");
    std::fs::write(&bad_value, "[mqtt]\nreceive_maximum = \"lots\"\n").expect("write");
    let out = run(
        data.path(),
        &["--config", bad_value.to_str().expect("utf-8")],
        &[],
    );
    assert_one_error_line(&out, &["mqtt.receive_maximum", "bad.toml"]);

    // A syntax error: the TOML parser's multi-line message still makes one line.
    let syntax = data.path().join("syntax.toml");
    std::fs::write(&syntax, "[mqtt\nreceive_maximum =\n").expect("write");
    let out = run(
        data.path(),
        &["--config", syntax.to_str().expect("utf-8")],
        &[],
    );
    assert_one_error_line(&out, &["invalid configuration", "syntax.toml"]);

    let out = run(
        data.path(),
        &["--mqtt-bind", "127.0.0.1:0"],
        &[("MESHMQ_MQTT__RECEIVE_MAXIMUM", "0")],
    );
    assert_one_error_line(
        &out,
        &[
            "mqtt.receive_maximum / MESHMQ_MQTT__RECEIVE_MAXIMUM",
            "greater than 0",
        ],
    );
}

#[test]
fn garbage_certificates_name_the_certs_dir_setting() {
    let data = tempfile::tempdir().expect("tempdir");
    let certs = data.path().join("garbage");
    std::fs::create_dir(&certs).expect("mkdir");
    for f in ["ca.pem", "ca.key", "r1.pem", "r1.key"] {
        std::fs::write(certs.join(f), "not a certificate\n").expect("write");
    }
    let certs = certs.to_str().expect("utf-8");
    let args = [
        "--node-name",
        "r1",
        "--core",
        "127.0.0.1:9",
        "--certs-dir",
        certs,
        "--mqtt-bind",
        "127.0.0.1:0",
    ];
    let out = run(data.path(), &args, &[]);
    assert_one_error_line(
        &out,
        &[
            "certificate",
            certs,
            "cluster.certs_dir / MESHMQ_CLUSTER__CERTS_DIR",
        ],
    );

    // Asked for: the same line first, then the chain and the backtrace.
    let out = run(data.path(), &args, &[("RUST_BACKTRACE", "1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("Stack backtrace"), "{stderr}");
}

#[test]
fn default_log_filter_shows_meshmq_lines_and_keeps_openraft_quiet() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_replicant-node"))
        .args(["--data-dir", data.path().to_str().expect("utf-8")])
        .args(["--mqtt-bind", "127.0.0.1:0", "--ws-bind", "127.0.0.1:0"])
        .args(["--http-bind", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replicant-node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The embedded core (openraft) starts before the broker says it started.
    let mut lines = Vec::new();
    let end = Instant::now() + RUN_LIMIT;
    while !lines
        .iter()
        .any(|l: &String| l.contains("meshmq broker started"))
    {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("no 'broker started' line ({e}); stdout so far: {lines:#?}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    lines.extend(rx.try_iter());
    assert!(
        lines.iter().any(|l| l.contains("replicant_node")),
        "meshmq's own lines at info: {lines:#?}"
    );
    let noisy: Vec<&String> = lines.iter().filter(|l| l.contains("openraft")).collect();
    assert!(
        noisy.is_empty(),
        "openraft internals at the default level: {noisy:#?}"
    );
}
