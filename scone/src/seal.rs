//! What authenticates a SCONE: an ed25519 signature over a Merkle root of blake3 leaf
//! digests, and an optional issuer-only keyed blake3 tag.
//!
//! A SCONE minted alone has an empty Merkle path, so its root is its own leaf digest. A
//! batch minted at one moment shares one signature over the root of a tree of their leaves;
//! each SCONE carries the sibling digests from its leaf to that root. Verifying costs the
//! same either way (one signature check plus a few blake3 hashes), while signing a batch
//! costs one signature for the whole group.

use serde::{Deserialize, Serialize};

/// Domain-separation contexts for the tree's two kinds of node, so that an inner node can
/// never pass for a leaf, nor a digest made for another purpose for either.
const LEAF_CONTEXT: &str = "scone 2026-11-21 leaf v1";
const NODE_CONTEXT: &str = "scone 2026-11-21 node v1";

/// Deepest Merkle path accepted: a batch holds at most 2^16 SCONEs.
pub const MAX_BATCH_DEPTH: usize = 16;

/// A 32-byte blake3 digest.
pub(crate) type Digest = [u8; 32];

/// The authenticating tail of an encoded SCONE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seal {
    /// Keyed blake3 of the claims under the issuer's tag key. Only the issuer can check it;
    /// the leaf digest covers it, so changing it breaks the public signature too.
    pub tag: Option<Digest>,
    /// Leaf position in its batch: bit `i` says whether the node at level `i` is a right child.
    pub index: u32,
    /// Sibling digests from the leaf up to the root; empty when minted alone.
    pub siblings: Vec<Digest>,
    /// ed25519 signature over the root.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl Seal {
    /// Checks what the decoder cannot: a bounded path, and an index that fits it (so one
    /// SCONE has exactly one encoding).
    pub fn check_shape(&self) -> Result<(), &'static str> {
        if self.siblings.len() > MAX_BATCH_DEPTH {
            return Err("merkle path too deep");
        }
        if u64::from(self.index) >> self.siblings.len() != 0 {
            return Err("merkle index out of range for its path");
        }
        Ok(())
    }
}

/// The leaf digest: covers the tag (fixed-length, first) and the exact claim bytes.
pub(crate) fn leaf_digest(claims: &[u8], tag: Option<&Digest>) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(LEAF_CONTEXT);
    match tag {
        None => hasher.update(&[0]),
        Some(tag) => hasher.update(&[1]).update(tag),
    };
    hasher.update(claims);
    *hasher.finalize().as_bytes()
}

fn node_digest(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    hasher.update(left).update(right);
    *hasher.finalize().as_bytes()
}

/// The issuer-only tag over the claims.
pub(crate) fn tag(tag_key: &[u8; 32], claims: &[u8]) -> Digest {
    *blake3::keyed_hash(tag_key, claims).as_bytes()
}

/// Whether `tag` is the issuer's tag for `claims`, compared in constant time.
pub(crate) fn tag_matches(tag_key: &[u8; 32], claims: &[u8], tag: &Digest) -> bool {
    blake3::keyed_hash(tag_key, claims) == blake3::Hash::from_bytes(*tag)
}

/// Folds a leaf up its path to the root.
pub(crate) fn root_from_path(leaf: Digest, index: u32, siblings: &[Digest]) -> Digest {
    siblings
        .iter()
        .enumerate()
        .fold(leaf, |node, (level, sibling)| {
            if index >> level & 1 == 0 {
                node_digest(&node, sibling)
            } else {
                node_digest(sibling, &node)
            }
        })
}

/// A Merkle tree over a batch's leaves: the root to sign, and each leaf's path to it.
///
/// A level with an odd count pairs its last node with itself, so every path has the same
/// depth, `ceil(log2(n))`, and a leaf's index bits alone say left or right at each level.
pub(crate) struct MerkleTree {
    /// Level 0 is the leaves; the last level holds the root alone.
    levels: Vec<Vec<Digest>>,
}

impl MerkleTree {
    /// Builds the tree; `leaves` must not be empty.
    pub fn new(leaves: Vec<Digest>) -> Self {
        debug_assert!(!leaves.is_empty());
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|level| level.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| node_digest(&pair[0], pair.get(1).unwrap_or(&pair[0])))
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// The digest to sign.
    pub fn root(&self) -> Digest {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or_default()
    }

    /// The siblings from leaf `index` to the root.
    pub fn path(&self, index: usize) -> Vec<Digest> {
        let mut position = index;
        let mut siblings = Vec::with_capacity(self.levels.len().saturating_sub(1));
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = position ^ 1;
            siblings.push(*level.get(sibling).unwrap_or(&level[position]));
            position /= 2;
        }
        siblings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| leaf_digest(&i.to_le_bytes(), None))
            .collect()
    }

    #[test]
    fn every_path_leads_to_the_root() {
        for n in [1, 2, 3, 4, 5, 7, 8, 9, 33] {
            let leaves = leaves(n);
            let tree = MerkleTree::new(leaves.clone());
            for (i, leaf) in leaves.iter().enumerate() {
                let path = tree.path(i);
                assert_eq!(path.len(), n.next_power_of_two().trailing_zeros() as usize);
                assert_eq!(
                    root_from_path(*leaf, i as u32, &path),
                    tree.root(),
                    "n={n} i={i}"
                );
            }
        }
    }

    #[test]
    fn a_leaf_does_not_prove_at_another_index() {
        let leaves = leaves(4);
        let tree = MerkleTree::new(leaves.clone());
        assert_ne!(root_from_path(leaves[0], 1, &tree.path(0)), tree.root());
    }

    #[test]
    fn tag_covers_claims() {
        let key = [3u8; 32];
        let t = tag(&key, b"claims");
        assert!(tag_matches(&key, b"claims", &t));
        assert!(!tag_matches(&key, b"claimz", &t));
        assert!(!tag_matches(&[4u8; 32], b"claims", &t));
    }
}
