//! Where a relay keeps the SCONEs it holds: a small trait, and the in-memory store.
//!
//! The mesh's store, [`MeshStore`](crate::MeshStore), implements [`Store`] too: it
//! copies each put to r peer relays and asks them on a miss.

use std::future::Future;

use scone::{CacheLimits, ClientId, PutOutcome, Scone, SconeCache, ServiceId};

/// What a held SCONE is filed under: the client it was issued to, and its service.
pub type HoldKey = (ClientId, ServiceId);

/// Where a relay keeps the SCONEs it holds for its clients, by (client ID, service ID).
///
/// The relay calls [`get`](Self::get) on each request it routes, [`put`](Self::put)
/// once a SCONE from a reply has verified, and [`forget`](Self::forget) when a server
/// refuses a SCONE the relay attached. Each returns a future, so that an implementation
/// may go to the network (the mesh will). Every implementation keeps this contract:
///
/// - a SCONE is only ever returned under the key it was put under (so one client's
///   SCONE never reaches another);
/// - `put` never replaces a SCONE with an older version of the same session (same
///   service, endpoint and object): it answers [`PutOutcome::Stale`];
/// - `get` never returns an expired SCONE;
/// - only SCONEs the relay has verified are put: a store need not verify again.
pub trait Store: Send + Sync + 'static {
    /// The newest unexpired SCONE held under `key`.
    fn get(&self, key: &HoldKey) -> impl Future<Output = Option<Scone>> + Send;

    /// Keeps `scone` under `key`, unless a newer version of its session is held.
    fn put(&self, key: HoldKey, scone: Scone) -> impl Future<Output = PutOutcome> + Send;

    /// Drops the SCONE under `key` if it is still `refused`'s version of `refused`'s
    /// session (a server refused it); a newer one that came meanwhile stays. Returns
    /// whether one was dropped.
    fn forget(&self, key: &HoldKey, refused: &Scone) -> impl Future<Output = bool> + Send;

    /// Whether the relay must finish [`put`](Self::put)ting a reply's SCONEs before the
    /// reply goes on to the client (default `false`: it keeps them in the background).
    /// A store whose put makes the SCONE durable elsewhere (the mesh's copies) says
    /// `true`, so that a relay that crashes right after answering has lost nothing.
    fn keep_before_reply(&self) -> bool {
        false
    }
}

/// The SCONEs of one relay, in its memory: a bounded LRU ([`SconeCache`]) by count and
/// bytes; each SCONE lives until its own expiry at most.
///
/// Lost when the relay stops: alone, a relay restart starts every thin client's sessions
/// over; in a mesh ([`MeshStore`](crate::MeshStore)), peers hold copies.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    /// The SCONEs, by (client, service).
    cache: SconeCache<HoldKey>,
}

impl MemoryStore {
    /// An empty store bounded by `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            cache: SconeCache::new(limits),
        }
    }

    /// The cache underneath: its size, bytes and bounds.
    pub fn cache(&self) -> &SconeCache<HoldKey> {
        &self.cache
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &HoldKey) -> Option<Scone> {
        self.cache.get(key)
    }

    async fn put(&self, key: HoldKey, scone: Scone) -> PutOutcome {
        self.cache.put(key, scone)
    }

    async fn forget(&self, key: &HoldKey, refused: &Scone) -> bool {
        self.cache
            .remove_if(key, |held| {
                held.endpoint() == refused.endpoint()
                    && held.object() == refused.object()
                    && held.version() == refused.version()
            })
            .is_some()
    }
}
