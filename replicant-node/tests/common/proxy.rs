//! [`RoundRobinProxy`]: an in-process TCP load balancer on 127.0.0.1:0 that sends each
//! accepted connection to the next backend in turn and copies bytes both ways, as a TCP
//! load balancer in front of the replicants of a cluster would.
//!
//! Owns its listener and the connection tasks; it must never look into the bytes it copies
//! (no MQTT awareness, no stickiness), and it stops every copy when dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A round-robin TCP proxy; see the module doc. Dropping it closes the listener and every
/// proxied connection.
pub struct RoundRobinProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RoundRobinProxy {
    /// Listens on 127.0.0.1:0; connection number `k` (counted in `next`, which several
    /// proxies may share) goes to `backends[k % backends.len()]`.
    pub async fn start(backends: Vec<SocketAddr>, next: Arc<AtomicUsize>) -> io::Result<Self> {
        assert!(!backends.is_empty(), "a proxy needs at least one backend");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, backends, next));
        Ok(RoundRobinProxy { addr, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RoundRobinProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every copy.
        self.task.abort();
    }
}

/// Accepts until aborted; each connection gets its own copy task.
async fn accept_loop(listener: TcpListener, backends: Vec<SocketAddr>, next: Arc<AtomicUsize>) {
    let mut copies = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    copies.spawn(pipe(client, backends[k % backends.len()]));
                }
                Err(e) => {
                    eprintln!("rr proxy {:?}: accept failed: {e}", listener.local_addr());
                    // Back off instead of spinning on e.g. EMFILE (not a synchronisation).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = copies.join_next(), if !copies.is_empty() => {}
        }
    }
}

/// Connects `client` to `backend` and copies both ways. An EOF on one side is passed on as
/// a shutdown of the other (`copy_bidirectional`); once both directions ended, or either
/// failed (reset, refused), both sockets are dropped, i.e. closed.
async fn pipe(mut client: TcpStream, backend: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut server = match TcpStream::connect(backend).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rr proxy: backend {backend} refused: {e}");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let _ = copy_bidirectional(&mut client, &mut server).await;
}

#[tokio::test]
async fn proxy_sends_each_connection_to_the_next_backend_and_passes_closes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("backend binds"),
        );
    }
    let addrs = backends
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect();
    let proxy = RoundRobinProxy::start(addrs, Arc::new(AtomicUsize::new(0)))
        .await
        .expect("proxy binds");
    for k in 0..6usize {
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut server, _) = tokio::time::timeout(super::WAIT, backends[k % 3].accept())
            .await
            .unwrap_or_else(|_| panic!("connection {k} did not reach backend {}", k % 3))
            .expect("accept");
        client.write_all(&[k as u8]).await.expect("client writes");
        let mut b = [0u8; 1];
        server.read_exact(&mut b).await.expect("server reads");
        assert_eq!(b[0], k as u8);
        server.write_all(b"ok").await.expect("server writes");
        drop(server);
        // The backend's close reaches the client after its data.
        let mut got = Vec::new();
        tokio::time::timeout(super::WAIT, client.read_to_end(&mut got))
            .await
            .expect("client sees EOF in time")
            .expect("client reads");
        assert_eq!(got, b"ok");
    }
}
