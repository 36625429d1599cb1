//! `scone-router`: a relay that keeps SCONEs in the network, so that clients that keep
//! nothing (`SconeClient::thin`) still have state (seed 002, "Network Storage of
//! State-Caching Objects", fig. 8).
//!
//! A [`Relay`] sits between clients and SCONE servers. It is a tarpc service over
//! `scone-rpc` envelopes, served by `scone_rpc::server::run` (the same listener, with its
//! bounded connections, timeouts and graceful shutdown). It reads only the envelope's
//! header (client ID, service ID, SCONEs) and passes the body bytes through untouched, so
//! it works for any service without knowing its types.
//!
//! Per request:
//! 1. **Route** by service ID to one of the service's upstream servers, in turn
//!    (round-robin), skipping one that fails to connect; a service with no route is
//!    refused with `wrong-service`.
//! 2. **Attach**: if the request carries no SCONE of the called service, attach the
//!    newest one held for (its client ID, that service). If it carries an *older* version
//!    of the held session, attach the newest in its place (the replay guard, below).
//! 3. **Reply first, then keep**: the reply goes back to the client at once, SCONEs
//!    included. In the background, each of its SCONEs of the called service is verified
//!    against the keys trusted for that service ([`config::TrustEntry`]): a forged one
//!    is dropped, counted and logged, never stored; a good one is stored by (client ID,
//!    service ID) in a bounded [`Store`], living until its own expiry at most. The
//!    client's next request to that service waits for that verification if it is still
//!    running (up to [`RelayConfig::pending_wait`]), so it gets the SCONE of its last
//!    reply, not an older one. SCONEs a server minted
//!    together share one signed Merkle root, which is verified once
//!    (`scone::VerifiedRoots`).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use scone_router::{Relay, RelayConfig};
//!
//! let mut config = RelayConfig::default();
//! config.set_routes(["cart=127.0.0.1:7001,127.0.0.1:7002".parse()?]);
//! config.set_trust([format!("cart={}", "<the cart's public key>").parse()?]);
//! let relay = Relay::new(&config)?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! relay.run(listener, tokio::signal::ctrl_c()).await?;
//! # Ok(()) }
//! ```
//!
//! # Replies keep their SCONEs
//! The relay passes each reply's SCONEs on to the client unchanged, and keeps its own
//! copy. A thin client ignores them; a caching client behind a relay keeps them, and so
//! survives the relay's loss. Stripping them would save a thin client the bytes but make
//! the relay the only holder, which, until relays copy SCONEs to peers, one relay restart
//! would wipe out. Forwarding them also costs nothing: the reply goes on as it came.
//!
//! # What the relay guarantees against replay
//! The relay knows the newest version it has verified of each (client, service) session
//! it holds. A request through it that carries an older version of that session gets the
//! newest attached in its place, and is counted as a stale replay
//! ([`StatsSnapshot::stale_replays`]): **through this relay, a held session never rolls
//! back.** The relay attaches the newest rather than refusing with `stale` because the
//! client did nothing wrong by holding an old copy (a caching client may have missed a
//! reply), and attaching keeps its session moving forward where a refusal would only
//! make it call again. What a request carries besides (a newer version, another
//! session, a SCONE that does not decode) goes on untouched, for the server to verify.
//! The relay's guard does not stop:
//! - a client that goes to a server directly, around the relay, with an old SCONE (turn
//!   on the servers' own replay guard, `scone_rpc::server::replay`, for that);
//! - an old SCONE of a session the relay does not hold (never seen, evicted by the
//!   bounds, expired, or lost in a relay restart: the store is in memory);
//! - a replay through *another* relay (until the mesh shares what relays hold).
//!
//! # Client IDs are bearer secrets
//! Whoever presents a client ID gets that client's SCONEs attached, so a client ID is a
//! secret: make it with `ClientId::random` (128 random bits, as `SconeClient` does), send
//! it only over connections you trust (TLS across machines), and never log it. The relay
//! never gives one client's SCONE to another client ID, and logs only a short prefix of
//! an ID ([`ClientTag`]).
//!
//! # Not built yet
//! This is the first cut: one relay, its state in its memory. Planned, with seams in
//! place:
//! - **Mesh**: copies of each stored SCONE on r peer relays and a distributed query on a
//!   miss, so state survives a relay crash; it will implement [`Store`].
//! - **Metrics**: a Prometheus `/metrics` endpoint; the counters are in
//!   [`StatsSnapshot`] (evictions are not counted yet: `SconeCache` does not report them).
//! - **Benchmark** of a relay hop against a plain TCP proxy, and a narrated demo.
//! - **Multi-tier state**: a back-end's SCONE that comes back through a front-end (an
//!   entrusting client) is passed to the client but not held, so a thin client's tiers
//!   behind the front-end start over on each call.
//! - Upstream connections: one per upstream address, shared by all the listener's
//!   worker threads; the hop benchmark will tell whether one per worker pays. A request
//!   whose connection is lost is sent again (see [`UpstreamConfig`]); telling a request
//!   that never left from one that did needs the connection's dispatch task, which
//!   `scone_rpc::client::connect` keeps to itself.
//! - TLS on either side of the relay (`scone_rpc::server::run_tls` and `connect_tls` are
//!   there to use).
//!
//! # Layout
//! - [`config`]: [`RelayConfig`], routes and trusted keys (`SERVICE=...`), the TOML file.
//! - [`relay`]: [`Relay`], the `Serve` implementation: route, attach, forward, and keep
//!   the reply's SCONEs in the background.
//! - `attach`: the request side: which SCONE goes upstream; the replay guard.
//! - `upstream`: the servers behind each route: round-robin, lazy connections, backoff,
//!   retry after a lost connection.
//! - `trust`: keys bound to services, and the Merkle roots already verified.
//! - `pending`: verifications in flight, which a client's next request waits for.
//! - [`store`]: [`Store`], where held SCONEs live, and [`MemoryStore`].
//! - [`stats`]: the counters ([`StatsSnapshot`]).
//! - [`client_tag`]: client IDs as logs show them.
//! - [`error`]: [`ConfigError`], [`RelayError`].

#![deny(missing_docs)]

mod attach;
pub mod client_tag;
pub mod config;
pub mod error;
mod pending;
pub mod relay;
pub mod stats;
pub mod store;
mod trust;
mod upstream;

pub use crate::client_tag::ClientTag;
pub use crate::config::{ConfigFile, RelayConfig, Route, TrustEntry, UpstreamConfig};
pub use crate::error::{ConfigError, RelayError};
pub use crate::relay::Relay;
pub use crate::stats::StatsSnapshot;
pub use crate::store::{HoldKey, MemoryStore, Store};
