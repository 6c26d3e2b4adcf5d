//! The `banned` table: EMQX's banned clients, keyed by (`as`, `who`): a client id, a
//! username, a peer address or a peer network (CIDR), with who banned it, why, when, and
//! until when (unix seconds; 0 = no end, EMQX's `infinity`).
//!
//! Owns the rows, their validation (bounded lengths, canonical addresses, a bounded table)
//! and the lookup the CONNECT path makes ([`Banned::find`]). Rows are kept in one ordered
//! map per kind: an exact lookup is a few string comparisons with no allocation, paging and
//! snapshots follow a stable order, and the network list is scanned only when it is not
//! empty. An ended ban is never matched (every lookup takes `now`); it stays a row until a
//! `BannedPurge` removes it. Apply never reads a clock: ops carry `now_s`.

use std::net::IpAddr;

use imbl::{OrdMap, OrdSet};

use meshmq_proto::tables::{BannedAs, BannedRow, RejectReason, Rejected};

use super::{invalid, reject};

/// Most bans the table holds; a new ban past it is refused (`QuotaExceeded`).
pub const MAX_BANNED_ROWS: usize = 1_000_000;
/// Longest `who` (an MQTT client id or username is at most 65 535 bytes).
pub const MAX_WHO_LEN: usize = 65_535;
/// Longest `by`.
pub const MAX_BY_LEN: usize = 256;
/// Longest `reason`.
pub const MAX_REASON_LEN: usize = 1024;
/// Latest `at` or `until`: 9999-12-31T23:59:59Z (RFC 3339 has four-digit years).
pub const MAX_TIME: u64 = 253_402_300_799;

/// An IP network: address with the host bits zero, and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d/n` or `v6::/n`; host bits must be zero (as a CIDR is written).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (address/prefix)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        // Peers are matched in their IPv4 form: an IPv4-mapped network would never match.
        if let IpAddr::V6(v6) = addr
            && v6.to_ipv4_mapped().is_some()
        {
            return Err(format!("{s:?}: write an IPv4-mapped network in IPv4 form"));
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: prefix must be 0..={max}"))?;
        let net = Self { addr, prefix };
        if net.masked(addr) != Some(addr) {
            return Err(format!("{s:?}: host bits must be zero"));
        }
        Ok(net)
    }

    /// `ip` with the host bits of this network cleared, if it is of the same family.
    fn masked(&self, ip: IpAddr) -> Option<IpAddr> {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(v4)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::V4((u32::from(v4) & mask).into()))
            }
            (IpAddr::V6(_), IpAddr::V6(v6)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::V6((u128::from(v6) & mask).into()))
            }
            _ => None,
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.masked(ip) == Some(self.addr)
    }
}

/// Checks a row as `BannedAdd` requires: known kind, `who` canonical for its kind, bounded
/// lengths.
pub fn check(row: &BannedRow) -> Result<(), Rejected> {
    if row.who.is_empty() || row.who.len() > MAX_WHO_LEN {
        return Err(invalid("BannedAdd: who empty or too long"));
    }
    if row.by.len() > MAX_BY_LEN || row.reason.len() > MAX_REASON_LEN {
        return Err(invalid(format!(
            "BannedAdd: by longer than {MAX_BY_LEN} or reason longer than {MAX_REASON_LEN} bytes"
        )));
    }
    if row.at > MAX_TIME || row.until > MAX_TIME {
        return Err(invalid("BannedAdd: at or until after the year 9999"));
    }
    match BannedAs::try_from(row.kind) {
        Ok(BannedAs::Clientid | BannedAs::Username) => Ok(()),
        Ok(BannedAs::Peerhost) => match row.who.parse::<IpAddr>() {
            // Canonical: peers are looked up as `to_canonical()` text (IPv4-mapped as IPv4).
            Ok(ip) if ip.to_canonical().to_string() == row.who => Ok(()),
            _ => Err(invalid("BannedAdd: peerhost is not a canonical IP address")),
        },
        Ok(BannedAs::PeerhostNet) => IpNet::parse(&row.who)
            .map(|_| ())
            .map_err(|e| invalid(format!("BannedAdd: {e}"))),
        Ok(BannedAs::Unspecified) | Err(_) => Err(invalid("BannedAdd: unknown kind")),
    }
}

/// Whether a ban holds at `now_s`.
pub fn in_force(row: &BannedRow, now_s: u64) -> bool {
    row.until == 0 || now_s < row.until
}

/// Bans by kind, each ordered by `who`, with an index of the ends (persistent maps: a
/// snapshot clones them in O(1)).
#[derive(Default, Clone)]
pub(super) struct Banned {
    clientid: OrdMap<String, BannedRow>,
    username: OrdMap<String, BannedRow>,
    peerhost: OrdMap<String, BannedRow>,
    /// CIDR text → parsed network and row (scanned at CONNECT when not empty).
    nets: OrdMap<String, (IpNet, BannedRow)>,
    /// (until, kind, who) of every ban with an end: what a purge removes, in order.
    ends: OrdSet<(u64, i32, String)>,
}

impl Banned {
    fn map(&self, kind: BannedAs) -> Option<&OrdMap<String, BannedRow>> {
        match kind {
            BannedAs::Clientid => Some(&self.clientid),
            BannedAs::Username => Some(&self.username),
            BannedAs::Peerhost => Some(&self.peerhost),
            BannedAs::PeerhostNet | BannedAs::Unspecified => None,
        }
    }

    /// The row `(kind, who)`, in force or not.
    pub(super) fn get(&self, kind: BannedAs, who: &str) -> Option<&BannedRow> {
        match kind {
            BannedAs::PeerhostNet => self.nets.get(who).map(|(_, r)| r),
            _ => self.map(kind)?.get(who),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.clientid.len() + self.username.len() + self.peerhost.len() + self.nets.len()
    }

    /// The first ban in force at `now_s` that matches the client: by client id, username,
    /// address, then network.
    pub(super) fn find(
        &self,
        client_id: &str,
        username: Option<&str>,
        peer: IpAddr,
        now_s: u64,
    ) -> Option<&BannedRow> {
        let live = |r: &&BannedRow| in_force(r, now_s);
        if let Some(r) = self.clientid.get(client_id).filter(live) {
            return Some(r);
        }
        if let Some(r) = username.and_then(|u| self.username.get(u)).filter(live) {
            return Some(r);
        }
        if !self.peerhost.is_empty()
            && let Some(r) = self
                .peerhost
                .get(peer.to_canonical().to_string().as_str())
                .filter(live)
        {
            return Some(r);
        }
        self.nets
            .values()
            .find(|(net, r)| in_force(r, now_s) && net.contains(peer))
            .map(|(_, r)| r)
    }

    /// Whether some ban has ended at `now_s` (a purge would remove something).
    pub(super) fn any_ended(&self, now_s: u64) -> bool {
        self.ends
            .get_min()
            .is_some_and(|(until, ..)| *until <= now_s)
    }

    /// Rows in (kind, who) order, skipping the first `skip`, at most `limit`.
    pub(super) fn page(&self, skip: usize, limit: usize) -> Vec<&BannedRow> {
        self.iter().skip(skip).take(limit).collect()
    }

    fn iter(&self) -> impl Iterator<Item = &BannedRow> {
        self.clientid
            .values()
            .chain(self.username.values())
            .chain(self.peerhost.values())
            .chain(self.nets.values().map(|(_, r)| r))
    }

    /// `BannedAdd` after [`check`]: refuses a duplicate in force and a full table.
    pub(super) fn add(&mut self, row: &BannedRow, now_s: u64) -> Result<(), Rejected> {
        let kind = BannedAs::try_from(row.kind).unwrap_or(BannedAs::Unspecified);
        match self.get(kind, &row.who) {
            Some(old) if in_force(old, now_s) => {
                return Err(reject(
                    RejectReason::StateConflict,
                    format!("BannedAdd: {:?} is already banned", row.who),
                ));
            }
            Some(_) => {}
            None if self.len() >= MAX_BANNED_ROWS => {
                return Err(reject(
                    RejectReason::QuotaExceeded,
                    format!("BannedAdd: the table holds {MAX_BANNED_ROWS} bans"),
                ));
            }
            None => {}
        }
        self.delete(kind, &row.who);
        if row.until != 0 {
            self.ends.insert((row.until, row.kind, row.who.clone()));
        }
        let who = row.who.clone();
        match kind {
            BannedAs::Clientid => self.clientid.insert(who, row.clone()),
            BannedAs::Username => self.username.insert(who, row.clone()),
            BannedAs::Peerhost => self.peerhost.insert(who, row.clone()),
            BannedAs::PeerhostNet => {
                let net = IpNet::parse(&who).map_err(invalid)?;
                self.nets.insert(who, (net, row.clone())).map(|(_, r)| r)
            }
            BannedAs::Unspecified => return Err(invalid("BannedAdd: unknown kind")),
        };
        Ok(())
    }

    /// Removes `(kind, who)`; true if it existed.
    pub(super) fn delete(&mut self, kind: BannedAs, who: &str) -> bool {
        let old = match kind {
            BannedAs::Clientid => self.clientid.remove(who),
            BannedAs::Username => self.username.remove(who),
            BannedAs::Peerhost => self.peerhost.remove(who),
            BannedAs::PeerhostNet => self.nets.remove(who).map(|(_, r)| r),
            BannedAs::Unspecified => None,
        };
        if let Some(old) = &old
            && old.until != 0
        {
            self.ends.remove(&(old.until, old.kind, old.who.clone()));
        }
        old.is_some()
    }

    /// Removes every ban.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Removes every ban that ended at `now_s`.
    pub(super) fn purge(&mut self, now_s: u64) {
        while let Some((until, kind, who)) = self.ends.get_min().cloned() {
            if until > now_s {
                break;
            }
            let kind = BannedAs::try_from(kind).unwrap_or(BannedAs::Unspecified);
            if !self.delete(kind, &who) {
                // Not a row (cannot happen: the index follows the rows); never loop on it.
                self.ends.remove_min();
            }
        }
    }

    pub(super) fn snapshot_rows(&self) -> Vec<BannedRow> {
        self.iter().cloned().collect()
    }

    /// Rebuilds from snapshot rows, skipping rows `check` would refuse (and rows past the
    /// table's bound).
    pub(super) fn restore(&mut self, rows: &[BannedRow]) {
        for row in rows {
            if check(row).is_ok() {
                // A snapshot holds no duplicates (the first row of a key wins); an ended row
                // stays until purged.
                let _ = self.add(row, u64::MAX);
            }
        }
    }
}
