//! The receiving side of replication: what a node does with a copy a peer sends, and
//! with a peer's question about a session. The same for every transport.

use std::sync::Arc;

use scone::{
    KeyId, KeyRing, Scone, ServiceId, SignatureCheck, SigningKey, VerifiedRoots, Verifier,
    VerifierConfig,
};
use scone_rpc::state::DeltaApplier;
use serde::{Deserialize, Serialize};

use crate::lineage::{Ballot, Lineage, VersionId};
use crate::session::SessionId;
use crate::stats::{bump, ClusterStats, Counters};
use crate::store::{Held, SessionStore, Stored};

/// A session's SCONE as it travels between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionCopy {
    /// The SCONE, encoded. (As bytes: the same on the wire as a sequence of `u8`, and
    /// decoded in one copy instead of byte by byte.)
    #[serde(with = "serde_bytes")]
    pub scone: Vec<u8>,
    /// The versions it descends from.
    pub lineage: Lineage,
    /// The request that made it (or vouches for it), when known: see
    /// [`SessionStore::put`].
    pub ballot: Option<Ballot>,
}

/// A new version sent to a peer that holds the version before it: the new SCONE's
/// encoding with its state replaced by the delta of the fields that changed. The peer
/// applies the delta to the state it holds, rebuilds the encoding, and checks it like a
/// whole copy (by signature, or by issuer tag on a node given the key), so it takes
/// nothing a holder of the service's key did not make.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeltaCopy {
    /// The session.
    pub session: SessionId,
    /// The version the delta applies to.
    pub parent: VersionId,
    /// The new encoding up to its state (the other claims).
    #[serde(with = "serde_bytes")]
    pub head: Vec<u8>,
    /// The changed fields (`scone_rpc::state::Delta`, postcard).
    #[serde(with = "serde_bytes")]
    pub delta: Vec<u8>,
    /// The new encoding after its state (the signature).
    #[serde(with = "serde_bytes")]
    pub tail: Vec<u8>,
    /// The request that made it.
    pub ballot: Option<Ballot>,
}

/// One copy in a message that carries several (a peer link sends what waits together).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CopyItem {
    /// A whole SCONE.
    Whole(SessionCopy),
    /// A delta of the version the peer holds.
    Delta(DeltaCopy),
}

impl CopyItem {
    /// The SCONE bytes it carries.
    pub fn payload_len(&self) -> usize {
        match self {
            CopyItem::Whole(copy) => copy.scone.len(),
            CopyItem::Delta(copy) => copy.payload_len(),
        }
    }
}

impl DeltaCopy {
    /// The copy of `minted` made from `parent` by the encoded `delta`, by the request of
    /// `ballot`.
    pub fn new(minted: &Scone, parent: VersionId, delta: &[u8], ballot: Option<Ballot>) -> Self {
        let encoded = minted.encoded();
        let state = minted.state_range();
        Self {
            session: SessionId::of(minted),
            parent,
            head: encoded[..state.start].to_vec(),
            delta: delta.to_vec(),
            tail: encoded[state.end..].to_vec(),
            ballot,
        }
    }

    /// The SCONE bytes it carries: claims, delta and signature.
    pub fn payload_len(&self) -> usize {
        self.head.len() + self.delta.len() + self.tail.len()
    }
}

impl SessionCopy {
    /// A copy of `scone` alone, its lineage unknown (a replica takes it if it is
    /// newer than what it holds, or holds nothing).
    pub fn without_lineage(scone: &Scone) -> Self {
        Self {
            scone: scone.encoded().to_vec(),
            lineage: Lineage::default(),
            ballot: None,
        }
    }

    /// The session and version its SCONE names, unverified: for logs.
    pub(crate) fn describe(&self) -> String {
        match scone::Scone::decode(self.scone.clone()) {
            Ok(scone) => format!("{} {}", SessionId::of(&scone), VersionId::of(&scone)),
            Err(_) => "an undecodable copy".into(),
        }
    }

    /// A copy of what a node holds.
    pub fn of(held: &Held) -> Self {
        Self {
            scone: held.scone().encoded().to_vec(),
            lineage: held.lineage().clone(),
            ballot: held.ballot(),
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
    /// A delta for a version the node does not hold (or cannot apply, or that does not
    /// rebuild the signed SCONE): the sender sends the whole copy instead.
    #[error("the node does not hold the version the delta applies to")]
    OutOfStep,
}

/// Why a replica cannot check copies by a key's issuer tag
/// ([`Replica::with_issuer_key`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerKeyError {
    /// The replica's keys do not trust the key for the service: checking its tags would
    /// make the replica take SCONEs it would otherwise refuse.
    #[error("the keys this node trusts do not include key {key_id} for service {service}")]
    NotTrusted {
        /// The service the key was given for.
        service: ServiceId,
        /// The key's ID.
        key_id: KeyId,
    },
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
    /// How to apply a delta to a held state, if this node takes deltas.
    applier: Option<DeltaApplier>,
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
            applier: None,
        }
    }

    /// Checks copies minted with `key` for `service` by their issuer tag (one keyed
    /// blake3 hash over the claims, Merkle path and signature) instead of their ed25519
    /// signature, as the node's own server checks what its clients hand back. Copies
    /// signed with any other trusted key are still checked by their signature.
    ///
    /// As strong a check as the signature, for a node that holds the key: only a holder
    /// of the signing key can make the tag (it is keyed with a key derived from it), and a
    /// holder could sign whatever it liked anyway. It takes the largest cost off a
    /// secondary's share of the commit path (35 µs of signature check on a small 2-core
    /// machine), and needs neither a cluster secret nor trust in the link.
    ///
    /// It changes how copies are checked, never which are taken: it fails with
    /// [`IssuerKeyError::NotTrusted`] unless the replica's keys already trust `key` for
    /// `service`.
    pub fn with_issuer_key(
        mut self,
        service: ServiceId,
        key: &SigningKey,
    ) -> Result<Self, IssuerKeyError> {
        let key_id = key.key_id();
        let not_trusted = || IssuerKeyError::NotTrusted {
            service: service.clone(),
            key_id,
        };
        if self.verifier.keys().get_for(&service, key_id) != Some(&key.public_key()) {
            return Err(not_trusted());
        }
        let verifier = (*self.verifier)
            .clone()
            .trusting_own_tags(service.clone(), key)
            .map_err(|_| not_trusted())?;
        self.verifier = Arc::new(verifier);
        Ok(self)
    }

    /// Takes deltas as well as whole copies, applying them with `apply`
    /// (`scone_rpc::state::apply_delta::<YourState>`); a node whose replica does also
    /// sends deltas to peers it knows hold the version before.
    pub fn with_deltas(mut self, apply: DeltaApplier) -> Self {
        self.applier = Some(apply);
        self
    }

    /// Whether it takes deltas.
    pub fn applies_deltas(&self) -> bool {
        self.applier.is_some()
    }

    /// Keeps `copy`, whole or a delta (see [`accept`](Self::accept),
    /// [`accept_delta`](Self::accept_delta)).
    pub fn accept_item(&self, copy: CopyItem) -> Result<(), ReplicaRefusal> {
        match copy {
            CopyItem::Whole(copy) => self.accept(copy),
            CopyItem::Delta(copy) => self.accept_delta(copy),
        }
    }

    /// Keeps the version `copy` makes of the one held, if this node holds the version
    /// it applies to and the rebuilt SCONE verifies; see [`DeltaCopy`].
    pub fn accept_delta(&self, copy: DeltaCopy) -> Result<(), ReplicaRefusal> {
        let ballot = copy.ballot;
        let kept = self
            .rebuild(copy)
            .and_then(|(scone, lineage)| self.keep(scone, lineage, ballot));
        self.count(&kept);
        kept
    }

    fn count(&self, kept: &Result<(), ReplicaRefusal>) {
        match kept {
            Ok(()) => bump(&self.counters.copies_kept),
            Err(_) => bump(&self.counters.copies_refused),
        }
    }

    /// The SCONE `copy` makes of the held version, verified, and its lineage.
    fn rebuild(&self, copy: DeltaCopy) -> Result<(Scone, Lineage), ReplicaRefusal> {
        let apply = self.applier.ok_or(ReplicaRefusal::OutOfStep)?;
        let held = self
            .store
            .get(&copy.session)
            .filter(|held| held.id() == copy.parent && !held.scone().is_sealed())
            .ok_or(ReplicaRefusal::OutOfStep)?;
        let state =
            apply(held.scone().state(), &copy.delta).map_err(|_| ReplicaRefusal::OutOfStep)?;
        let mut encoded = Vec::with_capacity(copy.head.len() + state.len() + copy.tail.len());
        encoded.extend_from_slice(&copy.head);
        encoded.extend_from_slice(&state);
        encoded.extend_from_slice(&copy.tail);
        // Not what the primary signed (a state type that encodes another way here, say):
        // the whole copy is asked for, and verified the same way.
        let scone = self.verified(encoded).ok_or(ReplicaRefusal::OutOfStep)?;
        if SessionId::of(&scone) != copy.session {
            return Err(ReplicaRefusal::Untrusted);
        }
        Ok((scone, Lineage::after(copy.parent, held.lineage())))
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// What it has done with the copies it was sent: the `copies_*` and
    /// `signature_checks` counters (the rest are a node's, zero here; a node's
    /// [`ClusterPlacement::stats`](crate::ClusterPlacement::stats) has them all).
    pub fn stats(&self) -> ClusterStats {
        self.counters.snapshot()
    }

    /// The store it keeps copies in.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// `bytes` as a SCONE that verifies, or `None`.
    pub fn verified(&self, bytes: Vec<u8>) -> Option<Scone> {
        let scone = Scone::decode_with_limit(bytes, self.max_scone_bytes).ok()?;
        self.verifies(&scone).then_some(scone)
    }

    /// Whether `scone` verifies under the keys trusted for its service.
    fn verifies(&self, scone: &Scone) -> bool {
        match self.verifier.verify_caching(scone, &self.roots) {
            Ok(SignatureCheck::Checked) => {
                bump(&self.counters.signature_checks);
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Keeps `copy` if it verifies and descends from what is held (see
    /// [`SessionStore::put`]). A copy of the very version held counts as kept (a
    /// retried copy, or a re-replication pass's copy to a node that holds it already):
    /// it is known by its digest, without checking its signature again.
    pub fn accept(&self, copy: SessionCopy) -> Result<(), ReplicaRefusal> {
        let SessionCopy {
            scone,
            lineage,
            ballot,
        } = copy;
        let Ok(scone) = Scone::decode_with_limit(scone, self.max_scone_bytes) else {
            bump(&self.counters.copies_refused);
            return Err(ReplicaRefusal::Untrusted);
        };
        // Hashed once, here: the same version with the same digest (blake3 of the
        // encoding) is the same bytes, verified when they were kept.
        let copy = Held::new(scone, lineage).with_ballot(ballot);
        if self.store.holds(&SessionId::of(copy.scone()), copy.id()) {
            bump(&self.counters.copies_held_already);
            return Ok(());
        }
        let kept = if self.verifies(copy.scone()) {
            self.keep_held(copy)
        } else {
            Err(ReplicaRefusal::Untrusted)
        };
        self.count(&kept);
        kept
    }

    /// Keeps `scone`, already verified, with its `lineage`, if it descends from what is
    /// held (see [`SessionStore::put`]).
    pub fn keep(
        &self,
        scone: Scone,
        lineage: Lineage,
        ballot: Option<Ballot>,
    ) -> Result<(), ReplicaRefusal> {
        self.keep_held(Held::new(scone, lineage).with_ballot(ballot))
    }

    /// [`keep`](Self::keep), for a SCONE already made a [`Held`].
    pub(crate) fn keep_held(&self, held: Held) -> Result<(), ReplicaRefusal> {
        if !held.lineage().is_valid_for(held.scone().version()) {
            return Err(ReplicaRefusal::Forked);
        }
        match self.store.put_held(held) {
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
