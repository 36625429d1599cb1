//! `/metrics`: the relay's counters in the Prometheus text format (`--metrics ADDR`).
//!
//! The counters live where the relay updates them ([`StatsSnapshot`], the store's cache,
//! [`MeshStats`](crate::MeshStats)); a scrape reads them at that moment, through a
//! [`prometheus_client`] collector, so nothing is counted twice. Every name starts with
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

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use scone::SconeCache;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::mesh::MeshStore;
use crate::relay::Relay;
use crate::stats::StatsSnapshot;
use crate::store::{HoldKey, Store};

/// Most scrapers served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a scraper may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping endpoint lets scrapes in progress finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The content type of the text [`Metrics::render`] makes.
pub const CONTENT_TYPE_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A relay's metrics: where to read its counters at each scrape. Cloning shares it.
#[derive(Clone)]
pub struct Metrics {
    sources: Arc<Sources>,
}

/// Where a scrape reads the counters.
#[derive(Clone)]
struct Sources {
    relay: Arc<dyn Fn() -> StatsSnapshot + Send + Sync>,
    cache: Option<SconeCache<HoldKey>>,
    mesh: Option<MeshStore>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("cache", &self.sources.cache.is_some())
            .field("mesh", &self.sources.mesh.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of `relay`: its [`StatsSnapshot`] counters. Add what its store holds
    /// with [`with_cache`](Self::with_cache) and, in a mesh, the mesh's counters with
    /// [`with_mesh`](Self::with_mesh).
    pub fn new<S: Store>(relay: &Relay<S>) -> Self {
        let relay = relay.clone();
        Self {
            sources: Arc::new(Sources {
                relay: Arc::new(move || relay.stats()),
                cache: None,
                mesh: None,
            }),
        }
    }

    /// Adds the held SCONEs, their bytes and the evictions of `cache` (the relay's
    /// [`MemoryStore`](crate::MemoryStore)'s, or a [`MeshStore`]'s
    /// [`local`](MeshStore::local) one).
    pub fn with_cache(mut self, cache: SconeCache<HoldKey>) -> Self {
        Arc::make_mut(&mut self.sources).cache = Some(cache);
        self
    }

    /// Adds the counters of the mesh `store` ([`MeshStats`](crate::MeshStats)) and what it holds.
    pub fn with_mesh(mut self, store: &MeshStore) -> Self {
        let sources = Arc::make_mut(&mut self.sources);
        sources.cache = Some(store.local().cache().clone());
        sources.mesh = Some(store.clone());
        self
    }

    /// The counters now, in the OpenMetrics text format (which Prometheus reads), ending
    /// with `# EOF`.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("scone_relay");
        registry.register_collector(Box::new(Arc::clone(&self.sources)));
        let mut text = String::new();
        // Writing to a String cannot fail, and the collector's own writes only fail when
        // the writer does.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(%error, "could not render the metrics");
        }
        text
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` completes; then stops
    /// accepting, lets scrapes in progress finish (for a moment) and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pass, do not spin.
                        tracing::warn!(%error, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            let metrics = self.clone();
            let mut stop = stop_rx.clone();
            let connection = http.serve_connection(
                TokioIo::new(stream),
                service_fn(move |request| {
                    let response = metrics.respond(&request);
                    async move { Ok::<_, Infallible>(response) }
                }),
            );
            connections.spawn(async move {
                let _permit = permit;
                tokio::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    // Only the stop is ever sent: any change means stop.
                    _ = stop.changed() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "metrics: connection ended with an error");
                }
            });
        }
        let _ = stop_tx.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            connections.abort_all();
        }
        Ok(())
    }

    /// The answer to one HTTP request.
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics" | "/") => (StatusCode::OK, self.render()),
            (_, "/metrics" | "/") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD\n".to_owned(),
            ),
            _ => (StatusCode::NOT_FOUND, "try /metrics\n".to_owned()),
        };
        let content_type = if status == StatusCode::OK {
            CONTENT_TYPE_TEXT
        } else {
            "text/plain; charset=utf-8"
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in (self.relay)().counters() {
            counter(&mut encoder, name, help, value)?;
        }
        if let Some(cache) = &self.cache {
            let help = "SCONEs dropped by the cache's count or byte bound.";
            counter(&mut encoder, "evictions", help, cache.evictions())?;
            let help = "SCONEs held (expired ones not yet met included).";
            gauge(
                &mut encoder,
                "held_scones",
                help,
                cache.len_including_expired(),
            )?;
            let help = "Encoded bytes of the SCONEs held.";
            gauge(&mut encoder, "held_bytes", help, cache.bytes())?;
        }
        if let Some(mesh) = &self.mesh {
            for (name, help, value) in mesh.stats().counters() {
                counter(&mut encoder, &format!("mesh_{name}"), help, value)?;
            }
        }
        Ok(())
    }
}

/// Writes one counter (the encoder appends `_total`).
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    let descriptor = encoder.encode_descriptor(name, help.trim(), None, metric.metric_type())?;
    metric.encode(descriptor)
}

/// Writes one gauge.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: usize,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    let descriptor = encoder.encode_descriptor(name, help.trim(), None, metric.metric_type())?;
    metric.encode(descriptor)
}
