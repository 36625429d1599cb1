//! The relay: a tarpc service over envelopes that routes each request by its service ID,
//! attaches the SCONE it holds for the caller, and keeps the SCONEs replies carry.

mod keep;

use std::future::Future;
use std::io;
use std::sync::Arc;

use scone::ServiceId;
use scone_rpc::envelope::{
    Outcome, Refusal, RefusalKind, RequestEnvelope, ResponseEnvelope, WireScones, ENVELOPE_VERSION,
};
use scone_rpc::server::ServerConfig;
use tarpc::server::Serve;
use tarpc::ServerError;
use tokio::net::TcpListener;
use tokio::runtime::Handle;

use crate::attach::{attach, Attached};
use crate::client_tag::ClientTag;
use crate::config::RelayConfig;
use crate::error::{ConfigError, RelayError};
use crate::pending::Pending;
use crate::stats::{bump, Stats, StatsSnapshot};
use crate::store::{HoldKey, MemoryStore, Store};
use crate::trust::Trust;
use crate::upstream::{Connector, Routes, UpstreamError};

/// A relay between clients and SCONE servers; serve it with [`run`](Self::run) (or
/// `scone_rpc::server::run`, whose listener it uses). Cloning shares it.
///
/// It is generic over where it keeps SCONEs ([`Store`]); [`Relay::new`] keeps them in
/// memory ([`MemoryStore`]).
pub struct Relay<S = MemoryStore> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Relay<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("routes", &self.shared.routes)
            .field("stats", &self.shared.stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// What every request shares.
struct Shared<S> {
    /// Upstreams by service.
    routes: Routes,
    /// The SCONEs held, by (client, service).
    store: S,
    /// Keys by service, and the roots already verified.
    trust: Trust,
    /// Replies whose SCONEs are being verified.
    pending: Arc<Pending>,
    /// Counters.
    stats: Stats,
    /// Where background verification runs (and upstream connections live).
    runtime: Handle,
    /// Largest SCONE decoded.
    max_scone_bytes: usize,
    /// How long a request waits for its client's last verification.
    pending_wait: std::time::Duration,
    /// The listener's settings, for [`Relay::run`].
    server: ServerConfig,
}

impl Relay<MemoryStore> {
    /// A relay configured by `config` that keeps SCONEs in memory, bounded by
    /// `config.cache`. Call it inside the tokio runtime that is to run upstream
    /// connections and background verification.
    pub fn new(config: &RelayConfig) -> Result<Self, RelayError> {
        Self::with_store(config, MemoryStore::new(config.cache))
    }
}

impl<S: Store> Relay<S> {
    /// A relay configured by `config` that keeps SCONEs in `store` (`config.cache` is
    /// then the store's business).
    pub fn with_store(config: &RelayConfig, store: S) -> Result<Self, RelayError> {
        let runtime = Handle::try_current().map_err(RelayError::NoRuntime)?;
        if let Some(empty) = config
            .routes
            .iter()
            .find(|route| route.upstreams.is_empty())
        {
            return Err(ConfigError::EmptyRoute(empty.service.clone()).into());
        }
        let trust = Trust::new(&config.trust, config.verified_roots, config.max_scone_bytes)?;
        for route in &config.routes {
            if !trust.covers(&route.service) {
                tracing::warn!(service = %route.service, "no key trusted for a routed service: its calls are forwarded, its state is not held");
            }
        }
        let connector = Connector {
            timeout: config.upstream.connect_timeout,
            max_frame_bytes: config.server.max_frame_bytes,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                routes: Routes::new(&config.routes, connector, config.upstream.clone()),
                store,
                trust,
                pending: Arc::default(),
                stats: Stats::default(),
                runtime,
                max_scone_bytes: config.max_scone_bytes,
                pending_wait: config.pending_wait,
                server: config.server.clone(),
            }),
        })
    }

    /// Serves clients on `listener` (`scone_rpc::server::run`, with this relay's `server`
    /// settings) until `shutdown` completes. Then it stops accepting, closes the client
    /// connections, and lets the calls it was forwarding finish (their replies may not
    /// reach their clients, which call again); it returns once those calls are over and
    /// the SCONEs of the replies it did send are verified and stored (waiting at most
    /// `pending_wait` for these).
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
        let server = self.shared.server.clone();
        let served = scone_rpc::server::run(listener, self.clone(), server, shutdown).await;
        if !self
            .shared
            .pending
            .all_settled(self.shared.pending_wait)
            .await
        {
            tracing::warn!("stopped with verifications still running: their scones are lost");
        }
        served
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Where it keeps SCONEs.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Routes `request`, with the SCONE held for its client attached, and keeps the
    /// SCONEs of the reply once they verify.
    async fn forward(
        self,
        ctx: tarpc::context::Context,
        mut request: RequestEnvelope,
    ) -> Result<ResponseEnvelope, ServerError> {
        let shared = &*self.shared;
        bump(&shared.stats.requests);
        if request.version != ENVELOPE_VERSION {
            return Ok(refused(
                RefusalKind::UnsupportedEnvelope,
                None,
                format!(
                    "envelope version {} (this relay reads {ENVELOPE_VERSION})",
                    request.version
                ),
            ));
        }
        let Some(pool) = shared.routes.get(&request.service) else {
            bump(&shared.stats.unrouted);
            let detail = format!("this relay has no route for service {}", request.service);
            return Ok(refused(
                RefusalKind::WrongService,
                Some(request.service),
                detail,
            ));
        };
        let client = ClientTag(request.client);
        let key: HoldKey = (request.client, request.service.clone());
        if !shared.pending.settled(&key, shared.pending_wait).await {
            bump(&shared.stats.pending_timeouts);
            tracing::warn!(%client, service = %key.1, "gave up waiting for the last reply's verification");
        }
        let held = shared.store.get(&key).await;
        let carried = std::mem::take(&mut request.scones);
        let (scones, attached) = attach(carried, &key.1, held, shared.max_scone_bytes);
        request.scones = scones;
        shared.count_attach(client, &key.1, &attached);

        let reply = match shared.routes.call(pool, ctx, request).await {
            Ok(reply) => reply,
            Err(error) => {
                bump(&shared.stats.upstream_failures);
                return Err(upstream_error(&key.1, error));
            }
        };
        if let (Outcome::Refused(refusal), Some(sent)) = (&reply.outcome, attached.sent()) {
            if matches!(refusal.kind, RefusalKind::Scone(_))
                && refusal.service.as_ref() == Some(&key.1)
            {
                // The server refused the SCONE the relay attached: drop it, or every call
                // of this client would carry it and be refused until it expires.
                if shared.store.forget(&key, sent).await {
                    bump(&shared.stats.refused_dropped);
                    tracing::info!(%client, service = %key.1, refusal = %refusal.kind.code(), "dropped a held scone the server refused");
                }
            }
        }
        // A service no key is trusted for: its SCONEs could never verify, so none is kept.
        if !reply.scones.is_empty() && shared.trust.covers(&key.1) {
            let guard = shared.pending.start(key.clone());
            let scones: WireScones = reply.scones.clone();
            if shared.store.keep_before_reply() {
                // Durable: verified, stored and copied (the mesh) before the reply goes.
                keep::keep(shared, key, scones).await;
                drop(guard);
                return Ok(reply);
            }
            // The reply goes back now; its SCONEs are verified and stored in the
            // background, on this thread's runtime (no handoff to another thread). The
            // client's next request waits for that (see `pending`).
            tokio::spawn(keep::Background::new(self.clone(), key, scones, guard).run());
        }
        Ok(reply)
    }
}

impl<S> Shared<S> {
    fn count_attach(&self, client: ClientTag, service: &ServiceId, attached: &Attached) {
        match attached {
            Attached::Miss => bump(&self.stats.misses),
            Attached::Hit(held) => {
                bump(&self.stats.hits);
                tracing::trace!(%client, %service, version = held.version(), "attached the held scone");
            }
            Attached::Carried => bump(&self.stats.carried),
            Attached::Replaced { carried, held } => {
                bump(&self.stats.stale_replays);
                tracing::debug!(%client, %service, carried, held = held.version(), "stale replay: attached the newest version instead");
            }
        }
    }
}

impl<S: Store> Serve for Relay<S> {
    type Req = RequestEnvelope;
    type Resp = ResponseEnvelope;

    async fn serve(
        self,
        ctx: tarpc::context::Context,
        request: RequestEnvelope,
    ) -> Result<ResponseEnvelope, ServerError> {
        self.forward(ctx, request).await
    }
}

/// A reply refusing the request, from the relay itself.
fn refused(kind: RefusalKind, service: Option<ServiceId>, detail: String) -> ResponseEnvelope {
    ResponseEnvelope {
        version: ENVELOPE_VERSION,
        scones: WireScones::new(),
        token: None,
        outcome: Outcome::Refused(Box::new(Refusal {
            kind,
            service,
            detail,
        })),
    }
}

/// What the client is told when no upstream answered.
fn upstream_error(service: &ServiceId, error: UpstreamError) -> ServerError {
    match error {
        UpstreamError::Unreachable => ServerError::new(
            io::ErrorKind::ConnectionRefused,
            format!("relay: no server of {service} could be reached"),
        ),
        UpstreamError::Lost => ServerError::new(
            io::ErrorKind::ConnectionAborted,
            format!("relay: the connection to the server of {service} was lost; the request may or may not have run"),
        ),
        UpstreamError::DeadlineExceeded => ServerError::new(
            io::ErrorKind::TimedOut,
            format!("relay: the server of {service} did not answer before the deadline"),
        ),
        UpstreamError::Server(error) => error,
    }
}
