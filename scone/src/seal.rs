//! What authenticates a SCONE: an ed25519 signature over a Merkle root of blake3 leaf
//! digests, and an optional issuer-only keyed blake3 tag.
//!
//! The claim bytes are hashed once, into the *claims digest*; everything else works on
//! that 32-byte digest, one blake3 block per step. The *leaf digest* covers the claims
//! digest and the leaf's position in its batch. A SCONE minted alone has an empty Merkle
//! path, so its root is its own leaf digest. A batch minted at one moment shares one
//! signature over the root of a tree of their leaves; each SCONE carries the sibling
//! digests from its leaf to that root. Verifying costs the same either way (one signature
//! check plus a few blake3 hashes), while signing a batch costs one signature for the
//! whole group.
//!
//! Every hash input, context string and layout, byte by byte: the crate's
//! [`format`](mod@crate::format).
//!
//! # The issuer tag
//! The issuer tag is a keyed blake3 hash, under the issuer's secret tag key, of everything
//! a public verifier checks: the claims digest, the position, the Merkle siblings and the
//! signature. It is computed *after* signing, so it is not under the signature (the leaf
//! does not cover it). The issuer accepts a SCONE whose tag matches without checking the
//! signature, and that is sound because a matching tag means the issuer itself sealed
//! exactly these claims with exactly this path and signature, all of which a public
//! verifier accepts: the issuer and every public verifier agree on every SCONE. A tag that
//! does not match (garbled, stripped, or from an older format) costs the issuer the
//! signature check instead, and changes nothing else: a SCONE with a wrong tag and a good
//! signature is valid for everyone. So the tag is not part of a SCONE's identity; identify
//! one by its service, endpoint and version, never by its bytes.

use std::ops::Range;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// One public blake3 key per kind of digest, derived from its context string: the claims
/// digest, a leaf and an inner node can never pass for one another, nor for a digest made
/// for any other purpose. (Keyed hashing with a fixed key derived once costs less per call
/// than blake3's derive-key mode, which rehashes the context every time.)
static CLAIMS_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("scone 2026-11-21 claims digest v1", b""));
static LEAF_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("scone 2026-11-22 leaf v2", b""));
static NODE_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("scone 2026-11-21 node v1", b""));
/// Stands in for the missing right child of a level with an odd count. A fixed value,
/// rather than a copy of the left child, so that each leaf verifies at exactly one index.
static EMPTY_NODE: LazyLock<Digest> =
    LazyLock::new(|| blake3::derive_key("scone 2026-11-21 empty node v1", b""));

/// The largest encoded seal: tag 34, index 5, siblings 3 + 32 × 16, signature 65.
const MAX_SEAL_BYTES: usize = 34 + 5 + 3 + 32 * MAX_BATCH_DEPTH + 65;

/// Deepest Merkle path accepted: a batch holds at most 2^16 SCONEs.
pub const MAX_BATCH_DEPTH: usize = 16;

/// A 32-byte blake3 digest.
pub(crate) type Digest = [u8; 32];

/// The authenticating tail of an encoded SCONE, as it is laid out on the wire. Fixed-size
/// fields travel as byte strings so that encoding and decoding them is a copy.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireSeal<'a> {
    /// Keyed blake3, under the issuer's tag key, of the claims digest, the index, the
    /// siblings and the signature (32 bytes). Only the issuer can check it; it is not
    /// under the signature (see [the module docs](self)).
    #[serde(with = "serde_bytes", borrow)]
    pub tag: Option<&'a [u8]>,
    /// Leaf position in its batch: bit `i` says whether the node at level `i` is a right child.
    pub index: u32,
    /// Sibling digests from the leaf up to the root, 32 bytes each; empty when minted alone.
    #[serde(with = "serde_bytes", borrow)]
    pub siblings: &'a [u8],
    /// ed25519 signature over the root (64 bytes).
    #[serde(with = "serde_bytes", borrow)]
    pub signature: &'a [u8],
}

impl WireSeal<'_> {
    /// Its length encoded with the shortest varints, which is how postcard encodes.
    fn canonical_len(&self) -> usize {
        let bytes = |field: &[u8]| varint_len(field.len() as u64) + field.len();
        1 + self.tag.map_or(0, bytes)
            + varint_len(u64::from(self.index))
            + bytes(self.siblings)
            + bytes(self.signature)
    }
}

/// Bytes of the shortest LEB128 varint for `value`.
pub(crate) fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The authenticating tail of a decoded SCONE. The path and signature are not copied:
/// they are positions in the SCONE's own bytes (which keeps a `Scone` small, and decoding
/// free of allocations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seal {
    /// The issuer tag, if the minter added one.
    pub tag: Option<Digest>,
    /// Leaf position in its batch.
    pub index: u32,
    /// Where the sibling digests (32 bytes each) sit in the SCONE's bytes.
    siblings: Range<usize>,
    /// Where the 64-byte ed25519 signature over the root sits in the SCONE's bytes.
    signature_at: usize,
}

impl Seal {
    /// Parses the seal that fills `encoded[start..]` exactly, and checks what the decoder
    /// cannot: field lengths, a bounded path, an index that fits it, and a canonical
    /// encoding (postcard accepts overlong varints; the seal is not itself signed, so
    /// without this check one SCONE could travel as several byte strings).
    pub fn parse(encoded: &[u8], start: usize) -> Result<Self, DecodeError> {
        Self::parse_checked(encoded, start, true)
    }

    /// Reads back a seal the minter has just encoded: the same checks but the canonical
    /// one, which cannot fail for bytes postcard itself wrote.
    pub fn parse_own(encoded: &[u8], start: usize) -> Result<Self, DecodeError> {
        Self::parse_checked(encoded, start, false)
    }

    fn parse_checked(encoded: &[u8], start: usize, canonical: bool) -> Result<Self, DecodeError> {
        let rest = &encoded[start..];
        if rest.len() > MAX_SEAL_BYTES {
            return Err(DecodeError::Malformed("seal too long"));
        }
        let (wire, trailing) = postcard::take_from_bytes::<WireSeal<'_>>(rest)?;
        if !trailing.is_empty() {
            return Err(DecodeError::Malformed("trailing bytes after the seal"));
        }
        // Postcard's only alternative encodings are overlong varints, and each one makes
        // the seal longer: the seal is canonical exactly when it has its shortest length.
        if canonical && rest.len() != wire.canonical_len() {
            return Err(DecodeError::Malformed("seal is not canonically encoded"));
        }
        let tag = match wire.tag {
            None => None,
            Some(tag) => Some(
                Digest::try_from(tag).map_err(|_| DecodeError::Malformed("tag is not 32 bytes"))?,
            ),
        };
        if wire.signature.len() != 64 {
            return Err(DecodeError::Malformed("signature is not 64 bytes"));
        }
        if wire.siblings.len() % 32 != 0 {
            return Err(DecodeError::Malformed("merkle path is not whole digests"));
        }
        let depth = wire.siblings.len() / 32;
        if depth > MAX_BATCH_DEPTH {
            return Err(DecodeError::Malformed("merkle path too deep"));
        }
        if u64::from(wire.index) >> depth != 0 {
            return Err(DecodeError::Malformed(
                "merkle index out of range for its path",
            ));
        }
        let offset_of = |part: &[u8]| part.as_ptr() as usize - encoded.as_ptr() as usize;
        let siblings_at = offset_of(wire.siblings);
        Ok(Self {
            tag,
            index: wire.index,
            siblings: siblings_at..siblings_at + wire.siblings.len(),
            signature_at: offset_of(wire.signature),
        })
    }

    /// How many levels its Merkle path has.
    pub fn depth(&self) -> usize {
        self.siblings.len() / 32
    }

    /// The sibling digests, out of `encoded` (the bytes it was parsed from).
    pub fn siblings<'a>(&self, encoded: &'a [u8]) -> &'a [u8] {
        &encoded[self.siblings.clone()]
    }

    /// The signature, out of `encoded` (the bytes it was parsed from).
    pub fn signature(&self, encoded: &[u8]) -> [u8; 64] {
        let mut signature = [0; 64];
        signature.copy_from_slice(&encoded[self.signature_at..self.signature_at + 64]);
        signature
    }
}

/// The claims digest: the one pass over the claim bytes.
pub(crate) fn claims_digest(claims: &[u8]) -> Digest {
    *blake3::keyed_hash(&CLAIMS_KEY, claims).as_bytes()
}

/// The leaf digest: one blake3 block over the claims digest and the leaf's position in
/// its batch.
///
/// The position is bound, so a leaf proves membership at its own index only, even when a
/// batch holds identical claims (whose leaves would otherwise be interchangeable, leaving
/// the index bits malleable). The issuer tag is not covered: it is made after the
/// signature, over it.
pub(crate) fn leaf_digest(claims_digest: &Digest, index: u32) -> Digest {
    *blake3::keyed_hash(&LEAF_KEY, &with_index(claims_digest, index)).as_bytes()
}

/// `digest` followed by `index`, little-endian.
fn with_index(digest: &Digest, index: u32) -> [u8; 36] {
    let mut input = [0u8; 36];
    input[..32].copy_from_slice(digest);
    input[32..].copy_from_slice(&index.to_le_bytes());
    input
}

fn node_digest(left: &Digest, right: &Digest) -> Digest {
    let mut input = [0u8; 64];
    input[..32].copy_from_slice(left);
    input[32..].copy_from_slice(right);
    *blake3::keyed_hash(&NODE_KEY, &input).as_bytes()
}

/// Bytes of the tag's input without siblings: claims digest, index, signature.
const TAG_INPUT_BASE: usize = 32 + 4 + 64;

/// The issuer-only tag over everything a public verifier checks: the claims digest, the
/// leaf's position, its Merkle siblings and the signature.
///
/// The input is unambiguous: every part has a fixed length but the siblings, whose length
/// follows from the total. It is gathered on the stack and hashed in one call (a single
/// blake3 chunk, 100 to 612 bytes).
pub(crate) fn tag(
    tag_key: &[u8; 32],
    claims_digest: &Digest,
    index: u32,
    siblings: &[u8],
    signature: &[u8; 64],
) -> blake3::Hash {
    let mut input = [0u8; TAG_INPUT_BASE + 32 * MAX_BATCH_DEPTH];
    let siblings = &siblings[..siblings.len().min(32 * MAX_BATCH_DEPTH)];
    let end = TAG_INPUT_BASE + siblings.len();
    input[..36].copy_from_slice(&with_index(claims_digest, index));
    input[36..36 + siblings.len()].copy_from_slice(siblings);
    input[36 + siblings.len()..end].copy_from_slice(signature);
    blake3::keyed_hash(tag_key, &input[..end])
}

/// Whether `tag` is the issuer's tag for these seal parts, compared in constant time.
pub(crate) fn tag_matches(
    tag_key: &[u8; 32],
    claims_digest: &Digest,
    index: u32,
    siblings: &[u8],
    signature: &[u8; 64],
    tag: &Digest,
) -> bool {
    // `blake3::Hash`'s equality is constant-time.
    self::tag(tag_key, claims_digest, index, siblings, signature) == blake3::Hash::from_bytes(*tag)
}

/// Folds a leaf up its path (`siblings`, 32 bytes per level) to the root.
pub(crate) fn root_from_path(leaf: Digest, index: u32, siblings: &[u8]) -> Digest {
    siblings
        .chunks_exact(32)
        .enumerate()
        .fold(leaf, |node, (level, sibling)| {
            let sibling: &Digest = sibling.try_into().unwrap_or(&[0; 32]);
            if index >> level & 1 == 0 {
                node_digest(&node, sibling)
            } else {
                node_digest(sibling, &node)
            }
        })
}

/// The depth of the tree over `leaves` leaves: `ceil(log2(leaves))`, 0 for one leaf.
pub(crate) fn batch_depth(leaves: usize) -> usize {
    (usize::BITS - leaves.saturating_sub(1).leading_zeros()) as usize
}

/// The encoded length of the seal of a SCONE at `index` in a batch of depth `depth`: what
/// the minter reserves, so that a SCONE's bytes are allocated once and exactly.
pub(crate) fn seal_len(tagged: bool, index: u32, depth: usize) -> usize {
    let (tag, siblings, signature) = ([0u8; 32], [0u8; 32 * MAX_BATCH_DEPTH], [0u8; 64]);
    WireSeal {
        tag: tagged.then_some(&tag[..]),
        index,
        siblings: &siblings[..32 * depth.min(MAX_BATCH_DEPTH)],
        signature: &signature,
    }
    .canonical_len()
}

/// A Merkle path: the sibling digests from a leaf up to the root, 32 bytes per level, on
/// the stack (a batch is at most [`MAX_BATCH_DEPTH`] deep).
pub(crate) struct MerklePath {
    bytes: [u8; 32 * MAX_BATCH_DEPTH],
    len: usize,
}

impl MerklePath {
    /// The path of a SCONE minted alone.
    pub const EMPTY: MerklePath = MerklePath {
        bytes: [0; 32 * MAX_BATCH_DEPTH],
        len: 0,
    };

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A Merkle tree over a batch's leaves: the root to sign, and each leaf's path to it.
///
/// A level with an odd count pairs its last node with a fixed empty node, so every path
/// has the same depth, `ceil(log2(n))`, a leaf's index bits alone say left or right at each
/// level, and each leaf proves membership at its own index only.
pub(crate) struct MerkleTree {
    /// Every level end to end, leaves first and the root last: one allocation.
    nodes: Vec<Digest>,
    /// Where each level starts in `nodes`; the last holds the root alone.
    level_starts: [usize; MAX_BATCH_DEPTH + 1],
    /// How many levels below the root.
    depth: usize,
}

impl MerkleTree {
    /// Builds the tree; `leaves` must yield between 1 and 2^16 digests.
    pub fn new(leaves: impl ExactSizeIterator<Item = Digest>) -> Self {
        let count = leaves.len();
        debug_assert!((1..=1 << MAX_BATCH_DEPTH).contains(&count));
        let depth = batch_depth(count).min(MAX_BATCH_DEPTH);
        // Each level is at most half the one below, rounded up: under 2n + depth in all.
        let mut nodes = Vec::with_capacity(2 * count + depth);
        nodes.extend(leaves);
        let mut level_starts = [0; MAX_BATCH_DEPTH + 1];
        for level in 1..=depth {
            let (start, end) = (level_starts[level - 1], nodes.len());
            level_starts[level] = end;
            for left in (start..end).step_by(2) {
                let right = if left + 1 < end {
                    nodes[left + 1]
                } else {
                    *EMPTY_NODE
                };
                let parent = node_digest(&nodes[left], &right);
                nodes.push(parent);
            }
        }
        Self {
            nodes,
            level_starts,
            depth,
        }
    }

    /// The digest to sign.
    pub fn root(&self) -> Digest {
        self.nodes.last().copied().unwrap_or_default()
    }

    /// The siblings from leaf `index` to the root.
    pub fn path(&self, index: usize) -> MerklePath {
        let mut path = MerklePath::EMPTY;
        let mut position = index;
        for level in 0..self.depth {
            let (start, end) = (self.level_starts[level], self.level_starts[level + 1]);
            let sibling = start + (position ^ 1);
            let digest = if sibling < end {
                &self.nodes[sibling]
            } else {
                &*EMPTY_NODE
            };
            path.bytes[32 * level..32 * (level + 1)].copy_from_slice(digest);
            position /= 2;
        }
        path.len = 32 * self.depth;
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| leaf_digest(&claims_digest(&i.to_le_bytes()), i as u32))
            .collect()
    }

    #[test]
    fn every_path_leads_to_the_root() {
        for n in [1, 2, 3, 4, 5, 7, 8, 9, 33] {
            let leaves = leaves(n);
            let tree = MerkleTree::new(leaves.iter().copied());
            for (i, leaf) in leaves.iter().enumerate() {
                let path = tree.path(i);
                let depth = n.next_power_of_two().trailing_zeros() as usize;
                assert_eq!(batch_depth(n), depth);
                assert_eq!(path.as_bytes().len(), 32 * depth);
                assert_eq!(
                    root_from_path(*leaf, i as u32, path.as_bytes()),
                    tree.root(),
                    "n={n} i={i}"
                );
            }
        }
    }

    #[test]
    fn a_leaf_proves_at_its_own_index_only() {
        for n in [3, 4, 5, 7] {
            let leaves = leaves(n);
            let tree = MerkleTree::new(leaves.iter().copied());
            let depth = n.next_power_of_two().trailing_zeros();
            for (i, leaf) in leaves.iter().enumerate() {
                for other in (0..1u32 << depth).filter(|&j| j as usize != i) {
                    assert_ne!(
                        root_from_path(*leaf, other, tree.path(i).as_bytes()),
                        tree.root(),
                        "n={n} leaf {i} at {other}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_shortest_length_is_postcards_own() {
        for value in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(
                varint_len(value),
                postcard::to_stdvec(&value).unwrap().len()
            );
        }
        let (tag, siblings, signature) = ([7u8; 32], [8u8; 32 * 5], [9u8; 64]);
        for (tag, index) in [(None, 0), (Some(&tag[..]), 31), (Some(&tag[..]), 200)] {
            let wire = WireSeal {
                tag,
                index,
                siblings: &siblings,
                signature: &signature,
            };
            assert_eq!(
                wire.canonical_len(),
                postcard::to_stdvec(&wire).unwrap().len()
            );
        }
    }

    #[test]
    fn seal_len_is_the_encoded_length() {
        let (tag, siblings, signature) = ([7u8; 32], [8u8; 32 * 7], [9u8; 64]);
        for (tagged, index, depth) in [(false, 0, 0), (true, 0, 0), (true, 5, 3), (true, 100, 7)] {
            let wire = WireSeal {
                tag: tagged.then_some(&tag[..]),
                index,
                siblings: &siblings[..32 * depth],
                signature: &signature,
            };
            assert_eq!(
                seal_len(tagged, index, depth),
                postcard::to_stdvec(&wire).unwrap().len()
            );
        }
    }

    #[test]
    fn an_overlong_varint_is_refused() {
        let signature = [9u8; 64];
        let wire = WireSeal {
            tag: None,
            index: 0,
            siblings: &[],
            signature: &signature,
        };
        let canonical = postcard::to_stdvec(&wire).unwrap();
        assert!(Seal::parse(&canonical, 0).is_ok());
        // The index 0 written as two bytes (0x80 0x00) still decodes to 0.
        let mut overlong = canonical.clone();
        overlong.splice(1..2, [0x80, 0x00]);
        let decoded: WireSeal<'_> = postcard::from_bytes(&overlong).unwrap();
        assert_eq!(decoded.index, 0);
        assert!(matches!(
            Seal::parse(&overlong, 0),
            Err(DecodeError::Malformed("seal is not canonically encoded"))
        ));
    }

    #[test]
    fn the_tag_covers_claims_position_path_and_signature() {
        let key = [3u8; 32];
        let digest = claims_digest(b"claims");
        let (siblings, signature) = ([5u8; 64], [6u8; 64]);
        let t = *tag(&key, &digest, 2, &siblings, &signature).as_bytes();
        assert!(tag_matches(&key, &digest, 2, &siblings, &signature, &t));
        assert!(!tag_matches(&key, &digest, 3, &siblings, &signature, &t));
        let other = claims_digest(b"claimz");
        assert!(!tag_matches(&key, &other, 2, &siblings, &signature, &t));
        assert!(!tag_matches(
            &[4u8; 32], &digest, 2, &siblings, &signature, &t
        ));
        assert!(!tag_matches(
            &key,
            &digest,
            2,
            &siblings[..32],
            &signature,
            &t
        ));
        let mut bad_sibling = siblings;
        bad_sibling[40] ^= 1;
        assert!(!tag_matches(&key, &digest, 2, &bad_sibling, &signature, &t));
        let mut bad_signature = signature;
        bad_signature[0] ^= 1;
        assert!(!tag_matches(
            &key,
            &digest,
            2,
            &siblings,
            &bad_signature,
            &t
        ));
    }

    #[test]
    fn leaf_digests_bind_the_position() {
        let digest = claims_digest(b"claims");
        assert_ne!(leaf_digest(&digest, 0), digest);
        assert_ne!(leaf_digest(&digest, 0), leaf_digest(&digest, 1));
    }
}
