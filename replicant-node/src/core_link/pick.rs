//! Which core to talk to: resolving the configured core addresses, dialing them (one cached
//! QUIC connection per address), asking each for its `Status` and choosing one.
//!
//! The choice ([`choose`]) is a pure function: the core with the fewest followers, plus a
//! random term so that replicants re-picking at the same moment (after a core died) spread
//! over the survivors instead of all landing on the same one (the herd of EMQX's mria#187).
//! This module never follows a log nor sends a transaction; it never retries on its own
//! (the follow task and `transact` own their back-off).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use meshmq_proto::core::{Request, Response, StatusRequest, StatusResponse, request, response};
use meshmq_shared::quic::{ALPN_CORE, Identity, endpoint, frame};
use meshmq_shared::wire_version::WireVersion;
use parking_lot::Mutex;
use rand::Rng;

use super::wire::WireGuard;

/// How long one core may take to connect and answer `Status` before it is left out.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// How much longer the other cores may take to answer once one has.
pub const PICK_GRACE: Duration = Duration::from_millis(100);

/// The random term added to each core's follower count spans this fraction of the mean
/// follower count (at least 1, so equal counts give a uniform choice).
const JITTER_FRACTION: f64 = 0.5;

/// A core that answered `Status`, as [`choose`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The core's address.
    pub addr: SocketAddr,
    /// Replicants following that core's log now.
    pub followers: u32,
}

/// Picks the index of the candidate with the lowest `followers + U(0, spread)`, where
/// `spread = max(1, JITTER_FRACTION × mean followers)`; `None` when there is none.
///
/// Equal loads give a uniform choice; a core far more loaded than another is never chosen
/// over it; close loads share the arrivals in proportion to the gap.
pub fn choose(candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let total: f64 = candidates.iter().map(|c| f64::from(c.followers)).sum();
    let spread = (JITTER_FRACTION * total / candidates.len() as f64).max(1.0);
    candidates
        .iter()
        .map(|c| f64::from(c.followers) + rng.random::<f64>() * spread)
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The core chosen by [`pick`], with its connection and the status it reported.
pub struct Picked {
    /// The core's address.
    pub addr: SocketAddr,
    /// A live connection to it.
    pub conn: quinn::Connection,
    /// Its answer to `Status` (its commit index is the catch-up target at start).
    pub status: StatusResponse,
}

/// QUIC client endpoints (one per address family, made on first use) and one cached
/// connection per core address.
pub struct Dialer {
    /// This node's TLS identity, presented to every core.
    identity: Identity,
    /// This node's inter-node protocol version and the cores' refusal of it, if they refuse.
    pub wire: WireGuard,
    /// Client endpoints: `[IPv4, IPv6]`.
    endpoints: Mutex<[Option<quinn::Endpoint>; 2]>,
    /// The last connection dialed per address; replaced when it has closed.
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
}

impl Dialer {
    /// A dialer presenting `identity`, speaking the inter-node protocol version `wire`.
    pub fn new(identity: Identity, wire: WireVersion) -> Self {
        Self {
            identity,
            wire: WireGuard::new(wire),
            endpoints: Mutex::new([None, None]),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// A live connection to `addr`: the cached one, or a new one (handshake within
    /// `timeout`).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<quinn::Connection, String> {
        if let Some(c) = self.conns.lock().get(&addr)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let ep = self.endpoint(addr)?;
        let conn = endpoint::connect(&ep, addr, timeout)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        self.conns.lock().insert(addr, conn.clone());
        Ok(conn)
    }

    /// Forgets the connection to `addr` (it misbehaved or went silent), so the next
    /// [`connect`](Self::connect) dials again. It is not closed here: a transaction still
    /// waiting on it keeps it until its answer (or its own timeout); quinn closes it when the
    /// last handle goes.
    pub fn forget(&self, addr: SocketAddr, why: &'static str) {
        if self.conns.lock().remove(&addr).is_some() {
            tracing::debug!(%addr, why, "core connection forgotten");
        }
    }

    /// The client endpoint for `addr`'s address family, made on first use.
    fn endpoint(&self, addr: SocketAddr) -> Result<quinn::Endpoint, String> {
        let slot = usize::from(addr.is_ipv6());
        let mut endpoints = self.endpoints.lock();
        if let Some(ep) = &endpoints[slot] {
            return Ok(ep.clone());
        }
        let ep = endpoint::client(&self.identity, ALPN_CORE, addr)
            .map_err(|e| format!("client endpoint: {e}"))?;
        endpoints[slot] = Some(ep.clone());
        Ok(ep)
    }

    /// Closes every connection and endpoint (the link is shutting down).
    pub fn close_all(&self) {
        for (_, c) in self.conns.lock().drain() {
            c.close(0u32.into(), b"shutdown");
        }
        for ep in self.endpoints.lock().iter().flatten() {
            ep.close(0u32.into(), b"shutdown");
        }
    }
}

/// Resolves `host:port` (an IP literal or a DNS name; a name may give several cores).
pub async fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = addr.parse() {
        return Ok(vec![a]);
    }
    let found = tokio::time::timeout(STATUS_TIMEOUT, tokio::net::lookup_host(addr))
        .await
        .map_err(|_| format!("resolve {addr}: timed out"))?
        .map_err(|e| format!("resolve {addr}: {e}"))?;
    Ok(found.collect())
}

/// Resolves every configured core address, skipping the ones that do not resolve;
/// duplicates are removed, order kept.
pub async fn resolve_all(cores: &[String]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for core in cores {
        match resolve(core).await {
            Ok(addrs) => {
                for a in addrs {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "core address does not resolve"),
        }
    }
    out
}

/// Asks `addr` for its status (connect and request bounded by [`STATUS_TIMEOUT`]); a core
/// that fails is forgotten so the next attempt dials it again.
pub async fn status(
    dialer: &Dialer,
    addr: SocketAddr,
) -> Result<(quinn::Connection, StatusResponse), String> {
    let asked = tokio::time::timeout(STATUS_TIMEOUT, async {
        let conn = dialer.connect(addr, STATUS_TIMEOUT).await?;
        let req = Request {
            kind: Some(request::Kind::Status(StatusRequest {})),
            wire: dialer.wire.proto(),
        };
        let resp: Response = frame::request(&conn, &req, frame::MAX_FRAME, STATUS_TIMEOUT)
            .await
            .map_err(|e| format!("status from {addr}: {e}"))?;
        let said = match &resp.kind {
            Some(response::Kind::Error(e)) => Some(e.message.as_str()),
            _ => None,
        };
        dialer
            .wire
            .check(resp.wire.as_ref(), &addr.to_string(), said)?;
        match resp.kind {
            Some(response::Kind::Status(s)) => Ok((conn, s)),
            Some(response::Kind::Error(e)) => Err(format!("status from {addr}: {}", e.message)),
            _ => Err(format!("status from {addr}: unexpected response")),
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("status from {addr}: timed out")));
    if asked.is_err() {
        dialer.forget(addr, "status failed");
    }
    asked
}

/// Resolves the configured cores, asks all of them for `Status` concurrently and returns
/// the one [`choose`] picks among those that answered; the error lists why each core was
/// left out. Once one core has answered, the others get [`PICK_GRACE`] more: a dead core
/// (which would take the whole [`STATUS_TIMEOUT`]) does not delay a fail-over.
pub async fn pick(dialer: &Dialer, cores: &[String]) -> Result<Picked, String> {
    use futures_util::StreamExt as _;
    let addrs = resolve_all(cores).await;
    if addrs.is_empty() {
        return Err(format!("no core address resolves ({})", cores.join(", ")));
    }
    let mut asking: futures_util::stream::FuturesUnordered<_> = addrs
        .iter()
        .map(|&a| async move { (a, status(dialer, a).await) })
        .collect();
    let mut errors = Vec::new();
    let mut up = Vec::new();
    let mut grace_end = None;
    loop {
        let next = match grace_end {
            None => asking.next().await,
            Some(end) => match tokio::time::timeout_at(end, asking.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some((addr, answer)) = next else { break };
        match answer {
            Ok((conn, status)) => {
                up.push((addr, conn, status));
                grace_end.get_or_insert_with(|| tokio::time::Instant::now() + PICK_GRACE);
            }
            Err(e) => errors.push(e),
        }
    }
    let candidates: Vec<Candidate> = up
        .iter()
        .map(|(addr, _, s)| Candidate {
            addr: *addr,
            followers: s.followers,
        })
        .collect();
    let chosen = choose(&candidates, &mut rand::rng());
    match chosen.map(|i| up.swap_remove(i)) {
        Some((addr, conn, status)) => Ok(Picked { addr, conn, status }),
        None => Err(errors.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn cands(followers: &[u32]) -> Vec<Candidate> {
        followers
            .iter()
            .enumerate()
            .map(|(i, &f)| Candidate {
                addr: SocketAddr::from(([127, 0, 0, 1], 4370 + i as u16)),
                followers: f,
            })
            .collect()
    }

    fn tally(followers: &[u32], draws: usize) -> Vec<usize> {
        let c = cands(followers);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; c.len()];
        for _ in 0..draws {
            let i = choose(&c, &mut rng).expect("a candidate");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn nothing_to_choose_from() {
        assert_eq!(choose(&[], &mut StdRng::seed_from_u64(1)), None);
        assert_eq!(choose(&cands(&[9]), &mut StdRng::seed_from_u64(1)), Some(0));
    }

    #[test]
    fn equal_loads_spread_evenly() {
        for load in [0, 40] {
            let counts = tally(&[load, load, load], 3_000);
            for c in counts {
                assert!((800..1_200).contains(&c), "{c} of 3000 for load {load}");
            }
        }
    }

    #[test]
    fn a_much_busier_core_is_never_chosen() {
        let counts = tally(&[100, 0, 100], 1_000);
        assert_eq!(counts, vec![0, 1_000, 0]);
    }

    #[test]
    fn close_loads_favour_the_lighter_core_without_a_herd() {
        // 10 vs 12 followers: the lighter core gets most, but not all, of the arrivals.
        let counts = tally(&[12, 10], 2_000);
        assert!(counts[1] > counts[0], "{counts:?}");
        assert!(counts[0] > 100, "{counts:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_choice() {
        let c = cands(&[3, 3, 4, 3]);
        let a: Vec<_> = {
            let mut rng = StdRng::seed_from_u64(42);
            (0..50).map(|_| choose(&c, &mut rng)).collect()
        };
        let mut rng = StdRng::seed_from_u64(42);
        let b: Vec<_> = (0..50).map(|_| choose(&c, &mut rng)).collect();
        assert_eq!(a, b);
    }
}
