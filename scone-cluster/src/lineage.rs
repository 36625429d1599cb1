//! Lineage: which versions of a session a SCONE descends from, so that versions are
//! ordered by ancestry and not by number alone.
//!
//! Version numbers alone cannot tell a later version of the line a client was
//! acknowledged on from a later version of another line: two primaries that served the
//! same version (one of them paused, or cut off) mint two SCONEs of the next version, and
//! whichever line then moves on first would, by number, replace the other, acknowledged
//! or not. So every copy travels with its [`Lineage`], the last [`LINEAGE_DEPTH`]
//! versions it descends from, and a node takes a copy only if it descends from the one it
//! holds ([`descent`]). A replica that fell further behind than that cannot tell, and
//! takes the newer version, as it must to catch up; so does one sent a copy with a short
//! lineage (its parent's not known where it was made). The lineage is not signed: a
//! peer is trusted to send the one it holds (set a cluster secret to keep strangers off
//! the peer port).

use scone::Scone;
use serde::{Deserialize, Serialize};

/// How many ancestors a [`Lineage`] names: a replica can tell another line from its own
/// as long as it is at most this many versions behind.
pub const LINEAGE_DEPTH: usize = 8;

/// One version of a session: its number, and the first 16 bytes of the blake3 hash of
/// its SCONE (as the routing token names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionId {
    /// The version number.
    pub version: u64,
    /// The SCONE's digest.
    pub digest: [u8; 16],
}

impl VersionId {
    /// The version `scone` is.
    pub fn of(scone: &Scone) -> Self {
        Self {
            version: scone.version(),
            digest: crate::session::digest(scone),
        }
    }
}

/// The request that made a version (or vouches for it): the version its client had been
/// acknowledged on (the routing token's), and how many requests the client had sent from
/// that token before ([`RoutingToken::attempt`](crate::RoutingToken::attempt)).
///
/// A client's ballots only grow: its token moves to newer versions, and each request it
/// sends from one token is numbered after the last. So of two lines made from one
/// acknowledged version, the one the client's later request made wins, whichever copy
/// arrives first: a copy made by an attempt the client gave up on (a node paused with the
/// request in its socket, say, that ran it on waking) never replaces the version the
/// client's retry was acknowledged on. See [`SessionStore::put`](crate::SessionStore::put).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The version the client had been acknowledged on.
    pub acknowledged: VersionId,
    /// How many requests the client had sent from that version's token before.
    pub attempt: u32,
}

impl Ballot {
    /// Its place in the client's order of requests.
    pub fn rank(&self) -> (u64, u32) {
        (self.acknowledged.version, self.attempt)
    }
}

/// `7:3fa0c2d1`: the number, and the digest's first four bytes (enough to tell two
/// lines apart in a log).
impl std::fmt::Display for VersionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.version)?;
        self.digest[..4]
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// The versions a SCONE descends from, its parent first, at most [`LINEAGE_DEPTH`] of
/// them. Empty for a new session, or when the parent's is not known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage(Vec<VersionId>);

impl Lineage {
    /// The lineage of a SCONE minted from `parent`, whose own lineage is `parent_lineage`.
    pub fn after(parent: VersionId, parent_lineage: &Lineage) -> Self {
        let mut ancestors = Vec::with_capacity(LINEAGE_DEPTH);
        ancestors.push(parent);
        ancestors.extend(
            parent_lineage
                .0
                .iter()
                .copied()
                .take(LINEAGE_DEPTH.saturating_sub(1)),
        );
        Self(ancestors)
    }

    /// The ancestors, parent first.
    pub fn ancestors(&self) -> &[VersionId] {
        &self.0
    }

    /// Whether it can be the lineage of version `version`: at most [`LINEAGE_DEPTH`]
    /// ancestors, each older than the one before. What a peer sends is checked so.
    pub fn is_valid_for(&self, version: u64) -> bool {
        self.0.len() <= LINEAGE_DEPTH
            && self
                .0
                .iter()
                .try_fold(version, |younger, ancestor| {
                    (ancestor.version < younger).then_some(ancestor.version)
                })
                .is_some()
    }
}

/// How a version relates to another of the same session: see [`descent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descent {
    /// The very same version.
    Same,
    /// A later version of the same line (or a later version of a line too far back to
    /// tell, which a replica that missed updates must take to catch up).
    Newer,
    /// Not later: the other is newer, or this one is older than it.
    Older,
    /// Another line: the same version number with another digest, or a later version
    /// whose ancestors name another SCONE at the other's version.
    Forked,
}

/// How `version` (whose ancestors are `lineage`) relates to `other`.
pub fn descent(version: VersionId, lineage: &Lineage, other: VersionId) -> Descent {
    if version == other {
        return Descent::Same;
    }
    if lineage.0.contains(&other) {
        return Descent::Newer;
    }
    if version.version == other.version {
        return Descent::Forked;
    }
    if version.version < other.version {
        return Descent::Older;
    }
    // The ancestors reach back as far as `other`'s version and do not name it.
    match lineage.0.last() {
        Some(oldest) if oldest.version <= other.version => Descent::Forked,
        _ => Descent::Newer,
    }
}

/// Whether `version` (with `lineage`) is `base` or descends from it, as far as can be
/// told.
pub fn descends_from(version: VersionId, lineage: &Lineage, base: VersionId) -> bool {
    matches!(
        descent(version, lineage, base),
        Descent::Same | Descent::Newer
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(version: u64, line: u8) -> VersionId {
        VersionId {
            version,
            digest: [line; 16],
        }
    }

    /// Versions `1..=to` of line `line`, the newest with its lineage.
    fn line(to: u64, line: u8) -> (VersionId, Lineage) {
        let mut lineage = Lineage::default();
        for version in 1..to {
            lineage = Lineage::after(id(version, line), &lineage);
        }
        (id(to, line), lineage)
    }

    #[test]
    fn a_later_version_of_the_same_line_is_newer_and_another_line_is_forked() {
        let (v9, lineage) = line(9, 1);
        assert_eq!(lineage.ancestors().len(), LINEAGE_DEPTH);
        assert!(lineage.is_valid_for(9));
        assert_eq!(descent(v9, &lineage, id(8, 1)), Descent::Newer);
        assert_eq!(
            descent(v9, &lineage, id(1, 1)),
            Descent::Newer,
            "too far back: newer"
        );
        assert_eq!(descent(v9, &lineage, id(9, 1)), Descent::Same);
        assert_eq!(descent(v9, &lineage, id(9, 2)), Descent::Forked);
        assert_eq!(descent(v9, &lineage, id(5, 2)), Descent::Forked);
        assert_eq!(descent(v9, &lineage, id(12, 2)), Descent::Older);
        // A new session (no ancestors) is newer than nothing it could be told apart from.
        assert_eq!(
            descent(id(2, 3), &Lineage::default(), id(1, 1)),
            Descent::Newer
        );
        assert!(descends_from(v9, &lineage, id(4, 1)));
        assert!(!descends_from(v9, &lineage, id(4, 2)));
    }

    #[test]
    fn a_lineage_out_of_order_or_too_long_is_not_valid() {
        let (_, lineage) = line(9, 1);
        assert!(
            !lineage.is_valid_for(8),
            "an ancestor as new as the version"
        );
        let mut reversed = lineage.clone();
        reversed.0.reverse();
        assert!(!reversed.is_valid_for(9));
        let mut long = lineage;
        long.0.push(id(0, 1));
        assert!(!long.is_valid_for(9));
    }
}
