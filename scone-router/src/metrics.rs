//! `/metrics`: the relay's counters in the Prometheus text format (`--metrics ADDR`).
//!
//! The counters live where the relay updates them ([`StatsSnapshot`], the store's cache,
//! [`MeshStats`](crate::MeshStats)); a scrape reads them at that moment, through
//! [`scone_rpc::metrics`], so nothing is counted twice. Every name starts with
//! `scone_relay_`:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `scone_relay_<counter>_total` | counter | each field of [`StatsSnapshot`] (`requests`, `hits`, `misses`, `stores`, `forged_dropped`, `stale_replays`, ...) |
//! | `scone_relay_evictions_total` | counter | SCONEs dropped by the cache's count or byte bound |
//! | `scone_relay_held_scones` | gauge | SCONEs held (expired ones not yet met included) |
//! | `scone_relay_held_bytes` | gauge | their encoded bytes |
//! | `scone_relay_mesh_<counter>_total` | counter | in a mesh, each field of [`MeshStats`](crate::MeshStats) (`peer_copies`, `peer_queries`, ...) |
//!
//! ```no_run
//! # async fn run(relay: scone_router::Relay) -> std::io::Result<()> {
//! use scone_router::metrics::Metrics;
//!
//! let metrics = Metrics::new(&relay).with_cache(relay.store().cache().clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9400").await?;
//! metrics.serve(listener, tokio::signal::ctrl_c()).await
//! # }
//! ```
//!
//! The endpoint answers `GET /metrics` (and `/`), HTTP/1.1, at most
//! [`MAX_CONNECTIONS`] scrapers at once, each closed if its request headers take longer
//! than [`HEADER_TIMEOUT`]. It shows counts only, never a client ID.

use std::future::Future;
use std::io;
use std::sync::Arc;

use scone::SconeCache;
use scone_rpc::metrics::{Collect, Samples};
use tokio::net::TcpListener;

use crate::mesh::MeshStore;
use crate::relay::Relay;
use crate::stats::StatsSnapshot;
use crate::store::{HoldKey, Store};

pub use scone_rpc::metrics::{CONTENT_TYPE_TEXT, HEADER_TIMEOUT, MAX_CONNECTIONS};

/// The start of every name.
const PREFIX: &str = "scone_relay";

/// A relay's metrics: where to read its counters at each scrape. Cloning shares it.
#[derive(Clone)]
pub struct Metrics {
    relay: RelayCounters,
    cache: Option<CacheCounters>,
    mesh: Option<MeshCounters>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("cache", &self.cache.is_some())
            .field("mesh", &self.mesh.is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of `relay`: its [`StatsSnapshot`] counters. Add what its store holds
    /// with [`with_cache`](Self::with_cache) and, in a mesh, the mesh's counters with
    /// [`with_mesh`](Self::with_mesh).
    pub fn new<S: Store>(relay: &Relay<S>) -> Self {
        let relay = relay.clone();
        Self {
            relay: RelayCounters(Arc::new(move || relay.stats())),
            cache: None,
            mesh: None,
        }
    }

    /// Adds the held SCONEs, their bytes and the evictions of `cache` (the relay's
    /// [`MemoryStore`](crate::MemoryStore)'s, or a [`MeshStore`]'s
    /// [`local`](MeshStore::local) one).
    pub fn with_cache(mut self, cache: SconeCache<HoldKey>) -> Self {
        self.cache = Some(CacheCounters(cache));
        self
    }

    /// Adds the counters of the mesh `store` ([`MeshStats`](crate::MeshStats)) and what it holds.
    pub fn with_mesh(mut self, store: &MeshStore) -> Self {
        self.cache = Some(CacheCounters(store.local().cache().clone()));
        self.mesh = Some(MeshCounters(store.clone()));
        self
    }

    /// The counters now, in the OpenMetrics text format (which Prometheus reads), ending
    /// with `# EOF`.
    pub fn render(&self) -> String {
        self.endpoint().render()
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` completes; then stops
    /// accepting, lets scrapes in progress finish (for a moment) and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
        self.endpoint().serve(listener, shutdown).await
    }

    /// The sources under the relay's prefix: the relay's counters, then the cache's, then
    /// the mesh's.
    fn endpoint(&self) -> scone_rpc::metrics::Metrics {
        let mut endpoint = scone_rpc::metrics::Metrics::new(PREFIX).with(self.relay.clone());
        if let Some(cache) = &self.cache {
            endpoint = endpoint.with(cache.clone());
        }
        if let Some(mesh) = &self.mesh {
            endpoint = endpoint.with(mesh.clone());
        }
        endpoint
    }
}

/// The relay's [`StatsSnapshot`] counters.
#[derive(Clone)]
struct RelayCounters(Arc<dyn Fn() -> StatsSnapshot + Send + Sync>);

impl Collect for RelayCounters {
    fn collect(&self, samples: &mut Samples<'_>) {
        for (name, help, value) in (self.0)().counters() {
            samples.counter(name, help, value);
        }
    }
}

/// What a cache holds, and its evictions.
#[derive(Clone)]
struct CacheCounters(SconeCache<HoldKey>);

impl Collect for CacheCounters {
    fn collect(&self, samples: &mut Samples<'_>) {
        let cache = &self.0;
        let help = "SCONEs dropped by the cache's count or byte bound.";
        samples.counter("evictions", help, cache.evictions());
        let help = "SCONEs held (expired ones not yet met included).";
        samples.gauge("held_scones", help, cache.len_including_expired() as u64);
        let help = "Encoded bytes of the SCONEs held.";
        samples.gauge("held_bytes", help, cache.bytes() as u64);
    }
}

/// A mesh's [`MeshStats`](crate::MeshStats) counters, each named `mesh_<counter>`.
#[derive(Clone)]
struct MeshCounters(MeshStore);

impl Collect for MeshCounters {
    fn collect(&self, samples: &mut Samples<'_>) {
        for (name, help, value) in self.0.stats().counters() {
            samples.counter(&format!("mesh_{name}"), help, value);
        }
    }
}
