//! Where the benchmark connects: broker endpoints (`host:port`), lists of them for spreading
//! publishers and subscribers over several nodes (`--pub-hosts`, `--sub-hosts`), the
//! loopback policy and address resolution.
//!
//! It owns parsing and the loopback check. It must never accept a non-loopback host unless
//! the caller passed `allow_remote`, and never returns a resolved address that is not
//! loopback in that case either (a name could resolve anywhere).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail, ensure};

/// One broker MQTT endpoint, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// MQTT port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from a host (brackets around IPv6 are dropped) and a port.
    pub fn new(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        }
    }

    /// Parses `host:port`; IPv6 literals need brackets (`[::1]:1883`).
    pub fn parse(text: &str) -> anyhow::Result<Endpoint> {
        let text = text.trim();
        let (host, port) = text
            .rsplit_once(':')
            .with_context(|| format!("{text:?} is not host:port"))?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        ensure!(
            bracketed || !host.contains(':'),
            "{text:?}: put an IPv6 address in brackets ([::1]:1883)"
        );
        ensure!(!host.is_empty(), "{text:?} has no host");
        let port: u16 = port
            .parse()
            .with_context(|| format!("{text:?}: bad port {port:?}"))?;
        ensure!(port != 0, "{text:?}: port 0");
        Ok(Endpoint::new(host, port))
    }

    /// Refuses the endpoint unless it is loopback or `allow_remote`.
    pub fn check(&self, allow_remote: bool) -> anyhow::Result<()> {
        check_host(&self.host, allow_remote)
    }

    /// Resolves the endpoint, keeping only loopback answers unless `allow_remote`.
    pub async fn resolve(&self, allow_remote: bool) -> anyhow::Result<SocketAddr> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("resolving {self}"))?;
        addrs
            .into_iter()
            .find(|a| allow_remote || a.ip().is_loopback())
            .with_context(|| format!("{self} has no loopback address"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses a comma-separated `host:port,host:port` list (empty items are refused).
pub fn parse_list(text: &str) -> anyhow::Result<Vec<Endpoint>> {
    let list: Vec<Endpoint> = text
        .split(',')
        .map(Endpoint::parse)
        .collect::<anyhow::Result<_>>()?;
    ensure!(!list.is_empty(), "empty endpoint list");
    Ok(list)
}

/// Resolves every endpoint of `list` (see [`Endpoint::resolve`]), in order.
pub async fn resolve_all(list: &[Endpoint], allow_remote: bool) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::with_capacity(list.len());
    for endpoint in list {
        out.push(endpoint.resolve(allow_remote).await?);
    }
    Ok(out)
}

/// The address connection `index` uses: round-robin over `addrs` (never empty).
pub fn pick(addrs: &[SocketAddr], index: usize) -> anyhow::Result<SocketAddr> {
    ensure!(!addrs.is_empty(), "no broker address");
    Ok(addrs[index % addrs.len()])
}

/// Refuses hosts outside 127.0.0.0/8, ::1 and `localhost` unless `allow_remote`.
pub fn check_host(host: &str, allow_remote: bool) -> anyhow::Result<()> {
    if allow_remote || is_loopback_name(host) {
        return Ok(());
    }
    bail!("refusing non-loopback host {host:?}: benchmarks run locally (pass --allow-remote)")
}

fn is_loopback_name(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_lists() {
        let list = parse_list("127.0.0.1:24202, localhost:24203,[::1]:1883").unwrap();
        assert_eq!(
            list,
            vec![
                Endpoint::new("127.0.0.1", 24202),
                Endpoint::new("localhost", 24203),
                Endpoint::new("::1", 1883),
            ]
        );
        assert_eq!(list[2].to_string(), "[::1]:1883");
        for bad in [
            "",
            "127.0.0.1",
            "::1:1883",
            ":1883",
            "h:0",
            "h:99999",
            "a:1,,b:2",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_robin_pick() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let picked: Vec<_> = (0..5).map(|i| pick(&[a, b], i).unwrap()).collect();
        assert_eq!(picked, vec![a, b, a, b, a]);
        assert!(pick(&[], 0).is_err());
    }

    #[test]
    fn loopback_policy() {
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(check_host(ok, false).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.1", "192.168.1.1", "example.com", "0.0.0.0", "::"] {
            assert!(check_host(bad, false).is_err(), "{bad}");
            assert!(check_host(bad, true).is_ok(), "{bad}");
        }
        assert!(Endpoint::new("10.0.0.1", 1883).check(false).is_err());
    }

    #[tokio::test]
    async fn resolves_loopback_only() {
        let list = parse_list("localhost:1883,127.0.0.2:1884").unwrap();
        let addrs = resolve_all(&list, false).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(addrs[1].port(), 1884);
    }
}
