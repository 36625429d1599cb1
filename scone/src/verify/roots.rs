//! Signatures already checked: SCONEs minted together share one signed Merkle root, so a
//! verifier that meets several of them needs to check that signature only once.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

use crate::keys::PublicKey;
use crate::seal::Digest;

/// How [`Verifier::verify_caching`](super::Verifier::verify_caching) settled a SCONE's
/// signature (every other check runs every time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureCheck {
    /// The ed25519 signature was checked, and its root remembered.
    Checked,
    /// The same key, root and signature had already verified: no signature check.
    CachedRoot,
    /// The issuer's own tag matched (a verifier of the issuing service).
    IssuerTag,
}

/// A bounded LRU of (public key, Merkle root, signature) triples that have verified.
///
/// A server that signs in groups (`scone-rpc`'s group commit) gives every SCONE minted in
/// one group the same root and signature; a verifier that meets several of them (a relay,
/// say, storing the replies of many clients) checks the signature on the first and only
/// recomputes the root (a few blake3 hashes) for the rest.
///
/// Sound because what is remembered is a fact about three values alone: "this signature
/// over this root verifies under this key". Everything that depends on the SCONE or the
/// moment (its size, service, validity window, lifetime, and whether its key is trusted
/// for its service) is still checked on every call, and the root is recomputed from the
/// SCONE's own claims and path, so a SCONE that is not in the signed tree misses. Removing
/// a key from the ring revokes it at once: the trust check runs before the lookup.
///
/// Each entry holds 128 bytes of triple plus the LRU's overhead (about 200 bytes in all).
/// Share one (behind an `Arc`) among every task that verifies.
pub struct VerifiedRoots {
    /// One lock, held for a hash lookup or insert only.
    entries: Mutex<LruCache<Triple, ()>>,
}

/// What a signature check established.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Triple {
    key: [u8; 32],
    root: Digest,
    signature: [u8; 64],
}

impl VerifiedRoots {
    /// An empty set remembering at most `capacity` roots, the least recently used going
    /// first.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<Triple, ()>> {
        // Every update is one complete step: a panic elsewhere leaves consistent data.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this signature over `root` has verified under `key` (and marks it used).
    pub(super) fn contains(&self, key: &PublicKey, root: &Digest, signature: &[u8; 64]) -> bool {
        let triple = Triple {
            key: *key.as_bytes(),
            root: *root,
            signature: *signature,
        };
        self.lock().get(&triple).is_some()
    }

    /// Remembers that this signature over `root` verified under `key`.
    pub(super) fn insert(&self, key: &PublicKey, root: &Digest, signature: &[u8; 64]) {
        let triple = Triple {
            key: *key.as_bytes(),
            root: *root,
            signature: *signature,
        };
        self.lock().put(triple, ());
    }

    /// How many roots it remembers.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every root.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

impl std::fmt::Debug for VerifiedRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.lock();
        f.debug_struct("VerifiedRoots")
            .field("len", &entries.len())
            .field("capacity", &entries.cap())
            .finish()
    }
}
