//! HAProxy in front of a PROXY protocol listener, as in production: `send-proxy-v2` (and
//! `send-proxy`, v1) on the backend server line, a client connecting to HAProxy from
//! 127.0.0.2, and the broker seeing 127.0.0.2 (the socket it accepts comes from HAProxy on
//! 127.0.0.1). Skipped with a message when HAProxy is not installed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::ReasonCode;
use meshmq_shared::config::ListenerKind;
use tokio::net::{TcpSocket, TcpStream};

use super::support::{add_listener, addr, recording_authn, start};
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{WAIT, wait_until_async};

const HAPROXY: &str = "/usr/sbin/haproxy";

/// A HAProxy process, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Connects to `at` from 127.0.0.2.
async fn connect_from_127_0_0_2(at: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().expect("addr"))?;
    socket.connect(at).await
}

#[tokio::test]
async fn haproxy_send_proxy_v1_and_v2_name_the_real_client() {
    if !Path::new(HAPROXY).exists() {
        println!("skipped: HAProxy is not installed ({HAPROXY} not found)");
        return;
    }
    let (authn, asked) = recording_authn(&[("peerhost", "${peerhost}")]).await;
    let b = start(|c| {
        add_listener(c, ListenerKind::Tcp, "lb", |l| {
            l.proxy_protocol = true;
            l.proxy_protocol_trusted = vec!["127.0.0.1/32".into()];
        });
        c.authentication = vec![authn];
    })
    .await;
    let broker = addr(&b, "tcp:lb");
    let (v2_port, v1_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend v2\n  bind 127.0.0.1:{v2_port}\n  default_backend v2\n\
             backend v2\n  server b1 {broker} send-proxy-v2\n\
             frontend v1\n  bind 127.0.0.1:{v1_port}\n  default_backend v1\n\
             backend v1\n  server b1 {broker} send-proxy\n"
        ),
    )
    .expect("write config");
    let child = Command::new(HAPROXY)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let _haproxy = Haproxy(child);
    for port in [v2_port, v1_port] {
        let front: SocketAddr = ([127, 0, 0, 1], port).into();
        let up = wait_until_async(WAIT, || async { TcpStream::connect(front).await.is_ok() }).await;
        assert!(up, "HAProxy listens on {front}");
        let tcp = connect_from_127_0_0_2(front)
            .await
            .expect("connect via HAProxy");
        let (_c, ack) = RawClient::over(tcp)
            .handshake(connect_packet(V5, &format!("via-haproxy-{port}")))
            .await;
        assert_eq!(ack.code, ReasonCode::Success);
        let peerhost = asked
            .lock()
            .last()
            .and_then(|f| f.get("peerhost").cloned())
            .unwrap_or_default();
        assert_eq!(
            peerhost, "127.0.0.2",
            "the client behind HAProxy (port {port})"
        );
    }
}
