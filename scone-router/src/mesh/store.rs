//! [`MeshStore`]: the local store, plus copies on peers and queries to them on a miss.

use std::sync::Arc;

use futures::future::join_all;
use scone::{ClientId, PutOutcome, Scone, ServiceId};
use tokio::runtime::Handle;

use super::link::LinkError;
use super::peers::{Peer, Peers};
use super::wire::{Copy, Mesh, MeshError};
use crate::client_tag::ClientTag;
use crate::config::RelayConfig;
use crate::error::{ConfigError, RelayError};
use crate::stats::bump;
use crate::store::{HoldKey, MemoryStore, Store};
use crate::trust::Trust;

/// A relay's store in a mesh: its own [`MemoryStore`], which also holds the copies its
/// peers send it, plus copies of each put on r peers and queries to peers on a miss.
/// Cloning shares it. Serve its peers with [`MeshStore::run`].
#[derive(Clone, Debug)]
pub struct MeshStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What this relay holds: its clients' SCONEs and its peers' copies.
    local: MemoryStore,
    /// Keys by service: copies and query answers are verified before they are kept.
    trust: Trust,
    /// The other relays.
    peers: Peers,
    /// Peers each put is copied to.
    replicas: usize,
    /// Copy after the reply (true) or before it (false, durable).
    fast: bool,
    /// Counters.
    stats: MeshCounters,
    /// Where fast-mode copies run.
    runtime: Handle,
    /// The settings the listener needs.
    pub(super) config: crate::config::MeshConfig,
}

crate::stats::counters! {
    /// The mesh's counters, updated as it works.
    MeshCounters;
    /// The mesh's counters at one moment ([`MeshStore::stats`]).
    MeshStats;
    /// Copies a peer acknowledged (kept, or already held newer).
    peer_copies,
    /// Puts acknowledged by fewer than r peers (every peer tried).
    copy_shortfalls,
    /// Local misses that asked the peers.
    peer_queries,
    /// Of those, the ones a peer answered with a SCONE that verified.
    peer_query_hits,
    /// Copies and query answers from peers that did not verify: dropped.
    peer_untrusted,
    /// Copies from peers this relay kept.
    copies_kept,
    /// Copies from peers refused as older than what this relay holds.
    copies_stale,
}

impl MeshStore {
    /// The mesh store `config` describes (`config.mesh`, with its keys and cache bounds).
    /// Call it inside the tokio runtime that is to run peer links.
    pub fn new(config: &RelayConfig) -> Result<Self, RelayError> {
        let runtime = Handle::try_current().map_err(RelayError::NoRuntime)?;
        let secret = config
            .mesh
            .secret
            .clone()
            .ok_or(ConfigError::MeshWithoutSecret)?;
        let trust = Trust::new(&config.trust, config.verified_roots, config.max_scone_bytes)?;
        let peers = Peers::new(
            &config.mesh.peers,
            secret,
            config.mesh.peer_timeout,
            runtime.clone(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                local: MemoryStore::new(config.cache),
                trust,
                peers,
                replicas: config.mesh.replicas.get(),
                fast: config.mesh.fast,
                stats: MeshCounters::default(),
                runtime,
                config: config.mesh.clone(),
            }),
        })
    }

    /// What this relay holds itself.
    pub fn local(&self) -> &MemoryStore {
        &self.inner.local
    }

    /// The counters now.
    pub fn stats(&self) -> MeshStats {
        self.inner.stats.snapshot()
    }

    pub(super) fn config(&self) -> &crate::config::MeshConfig {
        &self.inner.config
    }

    /// `bytes`, decoded and verified as a SCONE of `service`.
    fn verified(&self, bytes: Vec<u8>, service: &ServiceId) -> Option<Scone> {
        let inner = &*self.inner;
        let scone = Scone::decode_with_limit(bytes, inner.trust.max_scone_bytes()).ok();
        let scone = scone.filter(|scone| scone.service() == service);
        match scone.filter(|scone| inner.trust.check(scone).is_ok()) {
            Some(scone) => Some(scone),
            None => {
                bump(&inner.stats.peer_untrusted);
                None
            }
        }
    }
}

impl Inner {
    /// Copies `scone` down `key`'s rendezvous order until r peers have acknowledged it.
    async fn copy(&self, key: HoldKey, scone: Scone) {
        let mut acked = 0;
        for peer in self.peers.ranked(&key) {
            if acked == self.replicas {
                break;
            }
            let stored = self
                .peers
                .call(peer, |link| {
                    let scone = &scone;
                    async move { link.store(key.0, scone).await }
                })
                .await;
            match stored {
                Ok(()) | Err(LinkError::Refused(MeshError::Stale)) => {
                    acked += 1;
                    bump(&self.stats.peer_copies);
                }
                Err(error) => {
                    tracing::warn!(peer = %peer.addr, client = %ClientTag(key.0), service = %key.1, %error, "peer did not take a copy")
                }
            }
        }
        if acked < self.replicas {
            bump(&self.stats.copy_shortfalls);
            tracing::warn!(client = %ClientTag(key.0), service = %key.1, acked, wanted = self.replicas, "fewer peer copies than asked for");
        }
    }
}

impl Store for MeshStore {
    async fn get(&self, key: &HoldKey) -> Option<Scone> {
        if let Some(held) = self.inner.local.get(key).await {
            return Some(held);
        }
        let inner = &*self.inner;
        if inner.peers.is_empty() {
            return None;
        }
        bump(&inner.stats.peer_queries);
        let ranked = inner.peers.ranked(key);
        let (owners, others) = ranked.split_at(inner.replicas.min(ranked.len()));
        for group in [owners, others] {
            let asked = group.iter().map(|peer: &&Peer| {
                inner
                    .peers
                    .call(peer, |link| async move { link.query(key.0, &key.1).await })
            });
            let newest = join_all(asked)
                .await
                .into_iter()
                .filter_map(|answer| answer.ok().flatten())
                .filter_map(|bytes| self.verified(bytes, &key.1))
                .max_by_key(Scone::version);
            if let Some(found) = newest {
                bump(&inner.stats.peer_query_hits);
                inner.local.put(key.clone(), found.clone()).await;
                return Some(found);
            }
        }
        None
    }

    async fn put(&self, key: HoldKey, scone: Scone) -> PutOutcome {
        let outcome = self.inner.local.put(key.clone(), scone.clone()).await;
        let kept = matches!(outcome, PutOutcome::Inserted | PutOutcome::Replaced);
        if kept && !self.inner.peers.is_empty() {
            if self.inner.fast {
                let inner = Arc::clone(&self.inner);
                self.inner
                    .runtime
                    .spawn(async move { inner.copy(key, scone).await });
            } else {
                self.inner.copy(key, scone).await;
            }
        }
        outcome
    }

    async fn forget(&self, key: &HoldKey, refused: &Scone) -> bool {
        let dropped = self.inner.local.forget(key, refused).await;
        // Every peer, so that a later miss does not fetch the refused SCONE back.
        let peers = &self.inner.peers;
        let asked = peers.ranked(key).into_iter().map(|peer| {
            peers.call(
                peer,
                |link| async move { link.forget(key.0, refused).await },
            )
        });
        join_all(asked).await;
        dropped
    }

    fn keep_before_reply(&self) -> bool {
        !self.inner.fast && !self.inner.peers.is_empty()
    }
}

impl Mesh for MeshStore {
    async fn store(self, _: tarpc::context::Context, copy: Copy) -> Result<(), MeshError> {
        let inner = &*self.inner;
        let scone = Scone::decode_with_limit(copy.scone, inner.trust.max_scone_bytes())
            .map_err(|_| MeshError::Untrusted)?;
        if inner.trust.check(&scone).is_err() {
            bump(&inner.stats.peer_untrusted);
            return Err(MeshError::Untrusted);
        }
        let key = (ClientId::from_bytes(copy.client), scone.service().clone());
        match inner.local.put(key, scone).await {
            PutOutcome::Inserted | PutOutcome::Replaced => {
                bump(&inner.stats.copies_kept);
                Ok(())
            }
            PutOutcome::Stale => {
                bump(&inner.stats.copies_stale);
                Err(MeshError::Stale)
            }
            PutOutcome::TooLarge | PutOutcome::Expired => Err(MeshError::Unstorable),
        }
    }

    async fn query(
        self,
        _: tarpc::context::Context,
        client: [u8; 16],
        service: ServiceId,
    ) -> Option<Vec<u8>> {
        let key = (ClientId::from_bytes(client), service);
        let held = self.inner.local.get(&key).await?;
        Some(held.encoded().to_vec())
    }

    async fn forget(self, _: tarpc::context::Context, refused: Copy) -> bool {
        let max = self.inner.trust.max_scone_bytes();
        let Ok(scone) = Scone::decode_with_limit(refused.scone, max) else {
            return false;
        };
        let key = (
            ClientId::from_bytes(refused.client),
            scone.service().clone(),
        );
        self.inner.local.forget(&key, &scone).await
    }
}
