//! The client's address behind a trusted proxy: `X-Forwarded-For` / `X-Forwarded-Port`
//! (or the header names a listener configures).
//!
//! Owns which peers are believed (only addresses in the listener's trusted list; from
//! anyone else the headers are ignored, whatever they say) and how the address list is
//! read: every occurrence of the header joined in order, walked from the right (the hop the
//! trusted peer added), skipping trusted hops, and the first untrusted one is the client.
//! Anything malformed keeps the peer's own address and is counted. It must never refuse a
//! connection.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use super::config::WsConfig;

/// Where the client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The peer itself (untrusted, or a trusted peer without the header).
    Peer,
    /// The forwarding headers of a trusted peer.
    Forwarded,
    /// A trusted peer sent a header that does not parse (`address` or `port`): the peer.
    Malformed(&'static str),
}

/// The client's address for a request from `peer`, and where it came from.
pub(super) fn client_addr(
    cfg: &WsConfig,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> (SocketAddr, Source) {
    if !cfg.is_trusted(peer.ip()) {
        return (peer, Source::Peer);
    }
    let ip = match forwarded_ip(cfg, headers) {
        // A header never makes a client local: a loopback address grants reading `$SYS`,
        // and a proxy's header names a client that came from the network.
        Ok(Some(ip)) if ip.to_canonical().is_loopback() || ip.is_unspecified() => {
            return (not_local(peer), Source::Malformed("address"));
        }
        Ok(Some(ip)) => ip,
        Ok(None) => return (peer, Source::Peer),
        Err(()) => return (not_local(peer), Source::Malformed("address")),
    };
    let mut ports = headers.get_all(&cfg.port_header).iter();
    let port = match (ports.next(), ports.next()) {
        (None, _) => peer.port(),
        (Some(v), None) => match v.to_str().ok().and_then(|s| s.trim().parse::<u16>().ok()) {
            Some(p) => p,
            None => return (not_local(peer), Source::Malformed("port")),
        },
        (Some(_), Some(_)) => return (not_local(peer), Source::Malformed("port")),
    };
    (SocketAddr::new(ip, port), Source::Forwarded)
}

/// The address used when a trusted proxy's header cannot be read: the proxy's own, but
/// never a loopback one (a proxy on this host would otherwise make any client that spoils
/// the header local, which grants reading `$SYS`): then the unspecified address.
fn not_local(peer: SocketAddr) -> SocketAddr {
    if peer.ip().to_canonical().is_loopback() {
        let ip = match peer {
            SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        };
        SocketAddr::new(ip, peer.port())
    } else {
        peer
    }
}

/// The first untrusted hop from the right of the address header (the leftmost one when
/// every hop is trusted); `Ok(None)` without the header, `Err` when an entry walked over is
/// not an address.
fn forwarded_ip(cfg: &WsConfig, headers: &HeaderMap) -> Result<Option<IpAddr>, ()> {
    let mut entries = Vec::new();
    for value in headers.get_all(&cfg.address_header) {
        let value = value.to_str().map_err(|_| ())?;
        entries.extend(value.split(',').map(str::trim));
    }
    let mut last = None;
    for entry in entries.iter().rev() {
        let ip = parse_hop(entry).ok_or(())?;
        last = Some(ip);
        if !cfg.is_trusted(ip) {
            return Ok(Some(ip));
        }
    }
    Ok(last)
}

/// One hop: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]`, or either with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`). IPv4-mapped addresses come out as IPv4.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use axum::http::HeaderValue;
    use meshmq_shared::config::WebsocketOptions;

    use super::*;

    fn cfg(trusted: &[&str]) -> WsConfig {
        let t: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        WsConfig::new(&WebsocketOptions::default(), &t, 1024).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let c = cfg(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-port", "1"),
        ]);
        assert_eq!(
            client_addr(&c, addr("192.0.2.1:5000"), &h),
            (addr("192.0.2.1:5000"), Source::Peer)
        );
        let none = cfg(&[]);
        assert_eq!(
            client_addr(&none, addr("10.0.0.1:5000"), &h).1,
            Source::Peer
        );
    }

    #[test]
    fn ipv4_mapped_peers_and_hops_are_judged_as_ipv4() {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        let c = cfg(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7, ::ffff:10.0.0.2")]);
        assert_eq!(
            client_addr(&c, addr("[::ffff:10.0.0.1]:5000"), &h),
            (addr("203.0.113.7:5000"), Source::Forwarded)
        );
        // An untrusted mapped peer is not believed, nor a mapped spoof of a trusted hop.
        let untrusted = addr("[::ffff:192.0.2.1]:5000");
        assert_eq!(client_addr(&c, untrusted, &h), (untrusted, Source::Peer));
        let spoof = headers(&[("x-forwarded-for", "::ffff:198.51.100.9")]);
        assert_eq!(
            client_addr(&c, addr("10.0.0.1:5000"), &spoof).0,
            addr("198.51.100.9:5000")
        );
    }

    #[test]
    fn walks_from_the_right_over_trusted_hops() {
        let c = cfg(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = addr("127.0.0.1:5000");
        let cases = [
            ("203.0.113.7", "203.0.113.7:5000"),
            // A client-supplied (spoofed) first entry is left of the real client.
            ("1.1.1.1, 203.0.113.7, 10.0.0.2", "203.0.113.7:5000"),
            ("203.0.113.7:4711", "203.0.113.7:5000"),
            ("[2001:db8::1]:80", "[2001:db8::1]:5000"),
            ("2001:db8::1", "[2001:db8::1]:5000"),
            ("::ffff:203.0.113.7", "203.0.113.7:5000"),
            ("10.0.0.3, 10.0.0.2", "10.0.0.3:5000"),
        ];
        for (xff, want) in cases {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(
                client_addr(&c, peer, &h),
                (addr(want), Source::Forwarded),
                "{xff}"
            );
        }
        // Two header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.9"),
        ]);
        assert_eq!(client_addr(&c, peer, &h).0, addr("198.51.100.1:5000"));
        // The port header.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-port", " 4711 "),
        ]);
        assert_eq!(
            client_addr(&c, peer, &h),
            (addr("203.0.113.7:4711"), Source::Forwarded)
        );
        // No address header: the peer, and its port even if a port header came.
        let h = headers(&[("x-forwarded-port", "4711")]);
        assert_eq!(client_addr(&c, peer, &h), (peer, Source::Peer));
    }

    #[test]
    fn malformed_headers_keep_the_peer_but_never_a_local_one() {
        let c = cfg(&["127.0.0.1", "10.0.0.0/8"]);
        let remote = addr("10.1.1.1:5000");
        let h = headers(&[("x-forwarded-for", "junk")]);
        assert_eq!(
            client_addr(&c, remote, &h),
            (remote, Source::Malformed("address"))
        );
        // A proxy on this host: the client's address is unknown, not loopback.
        let peer = addr("127.0.0.1:5000");
        let unknown = addr("0.0.0.0:5000");
        for xff in [
            "unknown",
            "",
            "203.0.113.7,",
            "203.0.113.7, junk",
            "300.1.1.1",
            "[203.0.113.7]",
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.2",
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(
                client_addr(&c, peer, &h),
                (unknown, Source::Malformed("address")),
                "{xff:?}"
            );
        }
        // Entries left of the first untrusted hop are not looked at.
        let h = headers(&[("x-forwarded-for", "junk, 203.0.113.7")]);
        assert_eq!(client_addr(&c, peer, &h).0, addr("203.0.113.7:5000"));
        for port in ["x", "70000", "-1", "80, 81"] {
            let h = headers(&[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-port", port),
            ]);
            assert_eq!(
                client_addr(&c, peer, &h),
                (unknown, Source::Malformed("port")),
                "{port:?}"
            );
        }
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-port", "2"),
        ]);
        assert_eq!(client_addr(&c, peer, &h).1, Source::Malformed("port"));
    }

    #[test]
    fn configured_header_names_are_used() {
        let o = WebsocketOptions {
            proxy_address_header: "X-Real-IP".into(),
            proxy_port_header: "X-Real-Port".into(),
            ..WebsocketOptions::default()
        };
        let c = WsConfig::new(&o, &["127.0.0.1".into()], 1024).unwrap();
        let h = headers(&[
            ("x-real-ip", "203.0.113.7"),
            ("x-real-port", "9"),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(
            client_addr(&c, addr("127.0.0.1:5000"), &h).0,
            addr("203.0.113.7:9")
        );
    }
}
