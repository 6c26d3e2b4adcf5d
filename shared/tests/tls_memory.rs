//! How much memory an idle TLS connection's rustls state costs the server: handshakes run
//! in memory (no sockets, no tasks) between a rustls client and a `ServerTls`
//! configuration; the client side is dropped, the server side kept, and the growth of the
//! process's resident set divided by the number of connections. Linux only (reads
//! /proc/self/statm); elsewhere the test says so and passes.
//!
//! The broker's goal is at most 16 KiB per idle TLS connection in total (socket, task,
//! session, TLS); this checks that the TLS share stays well under it.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod tls_common;

use std::sync::Arc;

use meshmq_shared::config::tls::SslOptions;
use meshmq_shared::tls::ServerTls;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};
use tls_common::{ClientOpts, Pki, client_config};

/// The TLS state of one idle connection may take at most this much.
const TLS_BUDGET: usize = 10 * 1024;
const CONNECTIONS: usize = 1000;

/// Resident set size in bytes, if the platform tells.
fn rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Moves TLS bytes from `from` to `to` until neither has any to send.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut moved = !buf.is_empty();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().unwrap();
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        moved |= !buf.is_empty();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        if !moved && !client.is_handshaking() && !server.is_handshaking() {
            return;
        }
    }
    panic!("handshake did not finish");
}

fn per_connection(opts: &SslOptions, ca_pem: &str) -> Option<usize> {
    let tls = ServerTls::load(opts, &["mqtt"]).unwrap();
    let (client_cfg, _) = client_config(&ClientOpts::new(ca_pem));
    let name = ServerName::try_from("localhost").unwrap();
    let open = |n: usize, keep: &mut Vec<ServerConnection>| {
        for _ in 0..n {
            let mut server = ServerConnection::new(tls.config()).unwrap();
            // A fresh client configuration per connection: every handshake is full.
            let cfg = Arc::new((*client_cfg).clone());
            let mut client = ClientConnection::new(cfg, name.clone()).unwrap();
            pump(&mut client, &mut server);
            keep.push(server);
        }
    };
    let mut warm = Vec::new();
    open(50, &mut warm);
    let mut keep = Vec::with_capacity(CONNECTIONS);
    let before = rss()?;
    open(CONNECTIONS, &mut keep);
    let after = rss()?;
    Some(after.saturating_sub(before) / CONNECTIONS)
}

/// Runs [`measure_in_child`] in a fresh process (a heap that earlier measurements have
/// not left free space in) and returns its figure.
fn measure(reuse_sessions: bool) -> Option<usize> {
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .args([
            "--ignored",
            "--exact",
            "measure_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TLS_MEMORY_REUSE", if reuse_sessions { "1" } else { "0" })
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, rest) = text.split_once("per-connection-bytes=")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
#[ignore = "run by idle_tls_connection_memory in a child process"]
fn measure_in_child() {
    let reuse = std::env::var("TLS_MEMORY_REUSE").map_or(true, |v| v == "1");
    let pki = Pki::new("root");
    let opts = SslOptions {
        reuse_sessions: reuse,
        ..pki.server_options()
    };
    if let Some(n) = per_connection(&opts, pki.ca.ca_pem()) {
        println!("per-connection-bytes={n}");
    }
}

#[test]
fn idle_tls_connection_memory() {
    if rss().is_none() {
        eprintln!("no /proc/self/statm: memory not measured");
        return;
    }
    let with_tickets = measure(true).expect("child measurement");
    let without = measure(false).expect("child measurement");
    eprintln!(
        "rustls server state per idle TLS 1.3 connection: {with_tickets} bytes (tickets on), \
         {without} bytes (reuse_sessions = false); ServerConnection itself {} bytes",
        std::mem::size_of::<ServerConnection>()
    );
    assert!(
        with_tickets <= TLS_BUDGET,
        "{with_tickets} bytes per connection"
    );
    assert!(without <= TLS_BUDGET, "{without} bytes per connection");
}
