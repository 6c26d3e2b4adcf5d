//! Where a client's TCP connection comes from: `--ifaddr` local addresses, taken in turn.
//!
//! Why: the kernel picks an ephemeral port for every `connect`, searching its range (28 232
//! ports here, and it tries half of them first) for one whose 4-tuple is free. With ~14 000
//! connections from one address to one broker port, every further `connect` walks most of
//! the range: in a 90 000-client storm over 5 ports the load generator's `connect` calls
//! took ~78% of the box's CPU (`__inet_check_established`) and throttled the run, whatever
//! the broker. Several source addresses (anything in 127.0.0.0/8 on loopback) give each its
//! own range. The port is still chosen at `connect` time (`IP_BIND_ADDRESS_NO_PORT`), so
//! one source port serves every broker port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, ensure};
use tokio::net::{TcpSocket, TcpStream};

/// The `--ifaddr` addresses and whose turn is next (shared by every client of a process).
#[derive(Debug)]
pub struct LocalAddrs {
    addrs: Vec<IpAddr>,
    next: AtomicUsize,
}

impl LocalAddrs {
    /// `None` when no address was given (the kernel chooses, as usual).
    pub fn new(addrs: &[IpAddr]) -> Option<Arc<Self>> {
        (!addrs.is_empty()).then(|| {
            Arc::new(Self {
                addrs: addrs.to_vec(),
                next: AtomicUsize::new(0),
            })
        })
    }

    /// The next address, in turn.
    fn pick(&self) -> IpAddr {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs[k % self.addrs.len()]
    }
}

/// Connects to `addr` from the next of `local` (or from where the kernel chooses).
pub async fn connect(local: Option<&LocalAddrs>, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"));
    };
    let ip = local.pick();
    ensure!(
        ip.is_ipv4() == addr.is_ipv4(),
        "--ifaddr {ip} and the broker address {addr} are not of the same family"
    );
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("creating a TCP socket")?;
    #[cfg(target_os = "linux")]
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )
    .context("setting IP_BIND_ADDRESS_NO_PORT")?;
    socket
        .bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("binding to --ifaddr {ip}"))?;
    socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr} from {ip}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_in_turn() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let local = LocalAddrs::new(&[a, b]).unwrap();
        let picked: Vec<IpAddr> = (0..5).map(|_| local.pick()).collect();
        assert_eq!(picked, [a, b, a, b, a]);
        assert!(LocalAddrs::new(&[]).is_none());
    }

    #[tokio::test]
    async fn connects_from_the_given_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let local = LocalAddrs::new(&["127.0.0.3".parse().unwrap()]).unwrap();
        let (client, accepted) = tokio::join!(connect(Some(&local), addr), listener.accept());
        let (_server, peer) = accepted.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.3");
        assert_eq!(client.unwrap().local_addr().unwrap().ip(), peer.ip());
    }

    #[tokio::test]
    async fn a_family_mismatch_is_a_clear_error() {
        let local = LocalAddrs::new(&["::1".parse().unwrap()]).unwrap();
        let err = connect(Some(&local), "127.0.0.1:9".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("same family"), "{err}");
    }
}
