//! The inter-node protocol version (docs/upgrade.md, "Inter-node protocol"): what every
//! node puts in its first message to another node, and the rule deciding whether two
//! versions can talk.
//!
//! Rule: the same major is compatible, whatever the minors (either side may be newer by
//! minors; the newer side must not rely on what the older one lacks); a different major is
//! refused, both ways, with a message naming both versions. An absent version decodes as
//! 0.0, which no release speaks: it is refused as unknown, never guessed.
//!
//! The two constants below are kept on lines of their own, exactly as written, so that a
//! build "one minor step newer" can be made with
//! `sed -i 's/PROTOCOL_MINOR: u32 = 0;/PROTOCOL_MINOR: u32 = 1;/'` (scripts/test-rolling-upgrade).
//!
//! Owns the numbers and the pure check; it never does I/O and never logs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use meshmq_proto::tables::WireVersion as WireProto;

/// Major version of the inter-node protocol: bumped by a change an older node cannot ignore.
pub const PROTOCOL_MAJOR: u32 = 1;
/// Minor version of the inter-node protocol: bumped by an addition an older node ignores.
pub const PROTOCOL_MINOR: u32 = 0;

/// A protocol version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WireVersion {
    /// Different majors never talk.
    pub major: u32,
    /// Any two minors of one major talk.
    pub minor: u32,
}

impl WireVersion {
    /// The version this build speaks ([`PROTOCOL_MAJOR`].[`PROTOCOL_MINOR`]).
    pub const CURRENT: WireVersion = WireVersion {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
    };

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The version carried in a message; absent = 0.0 (refused as unknown).
    pub fn from_proto(v: Option<&WireProto>) -> Self {
        v.map_or(Self::new(0, 0), |v| Self::new(v.major, v.minor))
    }

    /// As carried in messages.
    pub fn to_proto(self) -> WireProto {
        WireProto {
            major: self.major,
            minor: self.minor,
        }
    }
}

impl Default for WireVersion {
    fn default() -> Self {
        Self::CURRENT
    }
}

impl fmt::Display for WireVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Two versions that cannot talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    /// The peer sent no version (0.0): not a meshmq node of any release, or a broken one.
    #[error(
        "the peer sent no meshmq inter-node protocol version; this node speaks {}.x",
        ours.major
    )]
    Unknown {
        /// This node's version.
        ours: WireVersion,
    },
    /// The peer speaks another major version.
    #[error(
        "the peer speaks meshmq inter-node protocol {theirs}; this node speaks {}.x",
        ours.major
    )]
    Major {
        /// This node's version.
        ours: WireVersion,
        /// The peer's version.
        theirs: WireVersion,
    },
}

/// Whether a node speaking `ours` can talk to one speaking `theirs`: same major (and not the
/// unknown 0.0).
pub fn check(ours: WireVersion, theirs: WireVersion) -> Result<(), Incompatible> {
    if theirs.major == 0 {
        return Err(Incompatible::Unknown { ours });
    }
    if theirs.major != ours.major {
        return Err(Incompatible::Major { ours, theirs });
    }
    Ok(())
}

/// The refusal text a node sends and logs: `{who} speaks meshmq inter-node protocol
/// {theirs}; this {what} speaks {ours.major}.x` (e.g. "replicant r1 speaks meshmq inter-node
/// protocol 2.0; this core speaks 1.x").
pub fn refusal(who: &str, theirs: WireVersion, this: &str, ours: WireVersion) -> String {
    if theirs.major == 0 {
        return format!(
            "{who} sent no meshmq inter-node protocol version (unknown; refused); this {this} \
             speaks {}.x",
            ours.major
        );
    }
    format!(
        "{who} speaks meshmq inter-node protocol {theirs}; this {this} speaks {}.x",
        ours.major
    )
}

/// A node's version, changeable at run time (tests only: a node speaks
/// [`WireVersion::CURRENT`] unless a test says otherwise).
#[derive(Debug)]
pub struct WireCell(AtomicU64);

impl WireCell {
    /// A cell holding `v`.
    pub fn new(v: WireVersion) -> Self {
        Self(AtomicU64::new(pack(v)))
    }

    /// The version now.
    pub fn get(&self) -> WireVersion {
        let bits = self.0.load(Ordering::Relaxed);
        WireVersion::new((bits >> 32) as u32, bits as u32)
    }

    /// Speaks `v` from now on.
    pub fn set(&self, v: WireVersion) {
        self.0.store(pack(v), Ordering::Relaxed);
    }
}

impl Default for WireCell {
    fn default() -> Self {
        Self::new(WireVersion::CURRENT)
    }
}

fn pack(v: WireVersion) -> u64 {
    (u64::from(v.major) << 32) | u64::from(v.minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_talks_whatever_the_minors() {
        let v10 = WireVersion::new(1, 0);
        assert_eq!(check(v10, WireVersion::new(1, 1)), Ok(()));
        assert_eq!(check(WireVersion::new(1, 1), v10), Ok(()));
        assert_eq!(check(v10, WireVersion::new(1, 7)), Ok(()));
        assert_eq!(check(v10, v10), Ok(()));
    }

    #[test]
    fn another_major_is_refused_both_ways() {
        let (v1, v2) = (WireVersion::new(1, 0), WireVersion::new(2, 0));
        assert_eq!(
            check(v1, v2),
            Err(Incompatible::Major {
                ours: v1,
                theirs: v2
            })
        );
        assert!(check(v2, v1).is_err());
        let text = check(v1, v2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            text,
            "the peer speaks meshmq inter-node protocol 2.0; this node speaks 1.x"
        );
    }

    #[test]
    fn an_absent_version_is_unknown_and_refused() {
        let absent = WireVersion::from_proto(None);
        assert_eq!(absent, WireVersion::new(0, 0));
        assert_eq!(
            check(WireVersion::CURRENT, absent),
            Err(Incompatible::Unknown {
                ours: WireVersion::CURRENT
            })
        );
        assert!(refusal("replicant r1", absent, "core", WireVersion::CURRENT).contains("unknown"));
    }

    #[test]
    fn displays_and_round_trips() {
        assert_eq!(WireVersion::new(1, 0).to_string(), "1.0");
        assert_eq!(WireVersion::new(12, 3).to_string(), "12.3");
        let v = WireVersion::new(3, 4);
        assert_eq!(WireVersion::from_proto(Some(&v.to_proto())), v);
        assert_eq!(
            refusal(
                "replicant r1",
                WireVersion::new(2, 0),
                "core",
                WireVersion::new(1, 0)
            ),
            "replicant r1 speaks meshmq inter-node protocol 2.0; this core speaks 1.x"
        );
        let cell = WireCell::default();
        assert_eq!(cell.get(), WireVersion::CURRENT);
        cell.set(WireVersion::new(u32::MAX, 5));
        assert_eq!(cell.get(), WireVersion::new(u32::MAX, 5));
    }

    #[test]
    fn the_constants_are_on_sed_able_lines() {
        let src = include_str!("wire_version.rs");
        assert!(src.contains("\npub const PROTOCOL_MAJOR: u32 = "));
        assert!(src.contains("\npub const PROTOCOL_MINOR: u32 = "));
    }
}
