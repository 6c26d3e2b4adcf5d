//! Start-up failures of the real `core-node` binary: its QUIC port in use, a certificate
//! directory with garbage in it, an admin HTTP off loopback without credentials, an unusable
//! API key, a zero snapshot interval. Each must end the process with a non-zero exit code and
//! exactly one `error: ...` line on stderr naming the flag (and its environment variable)
//! and the cause, without a backtrace.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Bound on one run of the binary (it fails during start-up).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `core-node` with `args` (HTTP on loopback port 0 unless `args` name another
/// `--http-bind`, data in `data`), without `RUST_LOG`,
/// `RUST_BACKTRACE` or `MESHMQ_CORE__*` from the test's environment.
fn run(data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_core-node"));
    cmd.args(["--data-dir", data.to_str().expect("utf-8 temp path")]);
    if !args.contains(&"--http-bind") {
        cmd.args(["--http-bind", "127.0.0.1:0"]);
    }
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MESHMQ_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn core-node");
    let end = Instant::now() + RUN_LIMIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("core-node still running after {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20)); // polling a child process, bounded
    }
    child.wait_with_output().expect("output")
}

/// Asserts a failed start with one `error:` line naming each of `wanted`, no backtrace.
fn assert_one_error_line(out: &Output, wanted: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for w in wanted {
        assert!(lines[0].contains(w), "{:?} does not name {w:?}", lines[0]);
    }
    assert!(
        !stderr.to_ascii_lowercase().contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn core_port_in_use_names_the_core_bind_flag() {
    let data = tempfile::tempdir().expect("tempdir");
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(data.path(), &["--core-bind", &addr]);
    assert_one_error_line(
        &out,
        &[
            "core endpoint",
            &addr,
            "--core-bind / MESHMQ_CORE__BIND",
            "in use",
        ],
    );
}

#[test]
fn garbage_certificates_name_the_certs_dir_flag() {
    let data = tempfile::tempdir().expect("tempdir");
    let certs = data.path().join("garbage");
    std::fs::create_dir(&certs).expect("mkdir");
    for f in ["ca.pem", "ca.key", "core-1.pem", "core-1.key"] {
        std::fs::write(certs.join(f), "not a certificate\n").expect("write");
    }
    let certs = certs.to_str().expect("utf-8");
    let out = run(
        data.path(),
        &["--core-bind", "127.0.0.1:0", "--certs-dir", certs],
    );
    assert_one_error_line(
        &out,
        &["certificates", "--certs-dir / MESHMQ_CORE__CERTS_DIR"],
    );
}

#[test]
fn an_exposed_admin_http_without_credentials_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = run(
        data.path(),
        &["--core-bind", "127.0.0.1:0", "--http-bind", "0.0.0.0:0"],
    );
    assert_one_error_line(
        &out,
        &[
            "not on loopback",
            "--http-bind / MESHMQ_CORE__HTTP_BIND",
            "--api-key / MESHMQ_CORE__API_KEY",
            "--api-key-file / MESHMQ_CORE__API_KEY_FILE",
            "--http-tls / MESHMQ_CORE__HTTP_TLS",
        ],
    );
}

#[test]
fn an_unusable_api_key_names_its_flag_and_is_not_echoed() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = run(
        data.path(),
        &[
            "--core-bind",
            "127.0.0.1:0",
            "--api-key",
            "s3cret with spaces",
        ],
    );
    assert_one_error_line(&out, &["API key", "--api-key / MESHMQ_CORE__API_KEY"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));

    // A guessable key: refused, and not echoed either.
    let out = run(
        data.path(),
        &["--core-bind", "127.0.0.1:0", "--api-key", "sh0rt-s3cret"],
    );
    assert_one_error_line(
        &out,
        &["at least 16 characters", "--api-key / MESHMQ_CORE__API_KEY"],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sh0rt-s3cret"));

    let missing = data.path().join("no-such-key-file");
    let missing = missing.to_str().expect("utf-8");
    let out = run(
        data.path(),
        &["--core-bind", "127.0.0.1:0", "--api-key-file", missing],
    );
    assert_one_error_line(
        &out,
        &[
            "--api-key-file / MESHMQ_CORE__API_KEY_FILE",
            "no-such-key-file",
        ],
    );
}

#[test]
fn a_zero_snapshot_interval_names_its_flag() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = run(
        data.path(),
        &["--core-bind", "127.0.0.1:0", "--snapshot-every", "0"],
    );
    assert_one_error_line(&out, &["--snapshot-every / MESHMQ_CORE__SNAPSHOT_EVERY"]);
}

#[test]
fn a_snapshot_interval_past_2_40_names_its_flag() {
    // openraft adds the interval to log indexes unchecked: u64::MAX would wrap (a snapshot
    // on every commit) or panic; it is refused, as a bound on keep-after-snapshot is.
    let data = tempfile::tempdir().expect("tempdir");
    let out = run(
        data.path(),
        &[
            "--core-bind",
            "127.0.0.1:0",
            "--snapshot-every",
            "18446744073709551615",
        ],
    );
    assert_one_error_line(&out, &["--snapshot-every / MESHMQ_CORE__SNAPSHOT_EVERY"]);
    let data = tempfile::tempdir().expect("tempdir");
    let out = run(
        data.path(),
        &[
            "--core-bind",
            "127.0.0.1:0",
            "--keep-after-snapshot",
            "1099511627777",
        ],
    );
    assert_one_error_line(
        &out,
        &["--keep-after-snapshot / MESHMQ_CORE__KEEP_AFTER_SNAPSHOT"],
    );
}
