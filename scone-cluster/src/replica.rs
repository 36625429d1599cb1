//! The receiving side of replication: what a node does with a copy a peer sends, and
//! with a peer's question about a session. The same for every transport.

use std::sync::Arc;

use scone::{KeyRing, Scone, VerifiedRoots, Verifier, VerifierConfig};
use serde::{Deserialize, Serialize};

use crate::lineage::{Lineage, VersionId};
use crate::session::SessionId;
use crate::stats::{bump, Counters};
use crate::store::{Held, SessionStore, Stored};

/// A session's SCONE as it travels between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionCopy {
    /// The SCONE, encoded.
    pub scone: Vec<u8>,
    /// The versions it descends from.
    pub lineage: Lineage,
    /// The version the client was acknowledged on, when the copy comes from a request
    /// that named one: see [`SessionStore::put`].
    pub acknowledged: Option<VersionId>,
}

impl SessionCopy {
    /// A copy of `scone` alone, its lineage unknown (a replica takes it if it is
    /// newer than what it holds, or holds nothing).
    pub fn without_lineage(scone: &Scone) -> Self {
        Self {
            scone: scone.encoded().to_vec(),
            lineage: Lineage::default(),
            acknowledged: None,
        }
    }

    /// A copy of what a node holds.
    pub fn of(held: &Held) -> Self {
        Self {
            scone: held.scone.encoded().to_vec(),
            lineage: held.lineage.clone(),
            acknowledged: None,
        }
    }
}

/// Why a node did not keep a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaRefusal {
    /// It does not decode, or does not verify under the keys trusted for its service: a
    /// process outside the cluster cannot plant state.
    #[error("the copy does not verify under the keys trusted for its service")]
    Untrusted,
    /// The node holds a newer version of the session: a stale primary cannot overwrite
    /// state.
    #[error("the node holds a newer version of the session")]
    Stale,
    /// The node holds a version of another line (or its lineage is not valid): a forked
    /// primary cannot overwrite state.
    #[error("the node holds a version of the session the copy does not descend from")]
    Forked,
    /// It has expired.
    #[error("the copy has expired")]
    Expired,
    /// The node is at its bound of sessions.
    #[error("the node holds as many sessions as it may")]
    Full,
    /// The session was ended.
    #[error("the session was ended")]
    Ended,
}

/// Signature roots a replica remembers as verified.
const VERIFIED_ROOTS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(4096) {
    Some(count) => count,
    None => std::num::NonZeroUsize::MIN,
};

/// Checks and keeps what peers send. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Replica {
    store: SessionStore,
    counters: Arc<Counters>,
    /// Merkle roots already verified: copies the primary signed in one group cost one
    /// signature check here, not one each.
    roots: Arc<VerifiedRoots>,
    verifier: Arc<Verifier>,
    max_scone_bytes: usize,
}

impl Replica {
    /// Keeps copies in `store` that verify under `keys` (bound to their services, as
    /// `KeyRing::for_service` makes them).
    pub fn new(store: SessionStore, keys: KeyRing) -> Self {
        let config = VerifierConfig::default();
        Self {
            store,
            counters: Arc::default(),
            roots: Arc::new(VerifiedRoots::new(VERIFIED_ROOTS)),
            max_scone_bytes: config.max_scone_bytes,
            verifier: Arc::new(Verifier::new(keys).with_config(config)),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The store it keeps copies in.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// `bytes` as a SCONE that verifies, or `None`.
    pub fn verified(&self, bytes: Vec<u8>) -> Option<Scone> {
        let scone = Scone::decode_with_limit(bytes, self.max_scone_bytes).ok()?;
        self.verifier.verify_caching(&scone, &self.roots).ok()?;
        Some(scone)
    }

    /// Keeps `copy` if it verifies and descends from what is held (see
    /// [`SessionStore::put`]). A copy of the very version held counts as kept (a
    /// retried copy).
    pub fn accept(&self, copy: SessionCopy) -> Result<(), ReplicaRefusal> {
        let SessionCopy {
            scone,
            lineage,
            acknowledged,
        } = copy;
        let kept = self
            .verified(scone)
            .ok_or(ReplicaRefusal::Untrusted)
            .and_then(|scone| self.keep(scone, lineage, acknowledged));
        match &kept {
            Ok(()) => bump(&self.counters.copies_kept),
            Err(_) => bump(&self.counters.copies_refused),
        }
        kept
    }

    /// Keeps `scone`, already verified, with its `lineage`, if it descends from what is
    /// held (see [`SessionStore::put`]).
    pub fn keep(
        &self,
        scone: Scone,
        lineage: Lineage,
        acknowledged: Option<VersionId>,
    ) -> Result<(), ReplicaRefusal> {
        if !lineage.is_valid_for(scone.version()) {
            return Err(ReplicaRefusal::Forked);
        }
        match self.store.put(scone, lineage, acknowledged) {
            Stored::Kept | Stored::Same => Ok(()),
            Stored::Stale => Err(ReplicaRefusal::Stale),
            Stored::Forked => Err(ReplicaRefusal::Forked),
            Stored::Expired => Err(ReplicaRefusal::Expired),
            Stored::Full => Err(ReplicaRefusal::Full),
            Stored::Ended => Err(ReplicaRefusal::Ended),
        }
    }

    /// The session as this node holds it, if it does: answered from this node's store
    /// only, never passed on.
    pub fn fetch(&self, session: &SessionId) -> Option<SessionCopy> {
        self.store.get(session).map(|held| SessionCopy::of(&held))
    }

    /// Ends `session` (ended on its primary): see [`SessionStore::end`].
    pub fn delete(&self, session: &SessionId) -> bool {
        self.store.end(session)
    }
}
