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
//! 3. **Keep the reply's SCONEs**: each of its SCONEs of the called service is verified
//!    against the keys trusted for that service ([`config::TrustEntry`]): a forged one
//!    is dropped, counted and logged, never stored; a good one is stored by (client ID,
//!    service ID) in a bounded [`Store`], living until its own expiry at most. SCONEs a
//!    server minted together share one signed Merkle root, which is verified once
//!    (`scone::VerifiedRoots`). When this happens depends on the store
//!    ([`Store::keep_before_reply`]):
//!    - **alone** ([`MemoryStore`]) or in a mesh with `--fast`: the reply goes back at
//!      once and the SCONEs are kept in the background. The client's next request to
//!      that service waits for that if it is still running (up to
//!      [`RelayConfig::pending_wait`]), so it gets the SCONE of its last reply, not an
//!      older one.
//!    - **in a mesh, durable** (the default with peers): verify, store, copy to r peers
//!      and their acknowledgements all happen *before* the reply goes on (see
//!      [The mesh](#the-mesh)).
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
//! the relays the only holders (without a mesh, one relay restart would wipe them out).
//! Forwarding them also costs nothing: the reply goes on as it came.
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
//! - an old SCONE of a session the relay does not hold and cannot fetch (never seen,
//!   evicted by the bounds, expired, lost in a restart of a relay without a mesh, or
//!   held only by peers that did not answer in time);
//! - in a mesh, see [below](#the-mesh) for replays through *another* relay.
//!
//! # Client IDs are bearer secrets
//! Whoever presents a client ID gets that client's SCONEs attached, so a client ID is a
//! secret: make it with `ClientId::random` (128 random bits, as `SconeClient` does), send
//! it only over connections you trust (TLS across machines), and never log it. The relay
//! never gives one client's SCONE to another client ID, and logs only a short prefix of
//! an ID ([`ClientTag`]).
//!
//! # The mesh
//! Relays started with a mesh secret (`--mesh-secret-file`) and `--peer ADDR`s keep
//! their SCONEs in a [`MeshStore`]: the relay's own [`MemoryStore`], plus a copy of each
//! stored SCONE on r peers (`--replicas`, default 1), chosen by rendezvous hashing of
//! (client, service) over the relay's peer list, plus a query to peers on a miss.
//!
//! **Order of a request, durable mode (the default).** Route, attach (a local miss first
//! asks the peers, below), forward, then, with the reply in hand: verify its SCONEs
//! (one ed25519 check, 30-45 µs, or none for a cached root), store locally, copy to the
//! first peer of the rendezvous order and wait for its acknowledgement, and so on down
//! the order until r peers have acknowledged; only then does the reply go on. Latency
//! cost: the verify plus one peer round trip per replica (sequential), on each call that
//! returns a new SCONE; an unreachable owner adds up to `--peer-timeout` (default
//! 500 ms) before the next peer is tried. A peer that already holds a newer version
//! counts as an acknowledgement. If fewer than r peers acknowledge (every peer tried),
//! the reply still goes on (counted in [`mesh::MeshStats::copy_shortfalls`] and
//! logged): the relay prefers answering to refusing, so then the state is only as safe
//! as the peers that did take it.
//!
//! **Fast mode** (`--fast`): the reply goes on first; verify, store and copy run in the
//! background. Failure window: from the moment the reply leaves until a peer has
//! acknowledged the copy (normally one verify and one round trip; up to
//! `--peer-timeout` per peer tried when peers are down). If the relay dies within it,
//! the newest version is lost, and the client's next call through another relay starts
//! from the version before (which the peers hold).
//!
//! **On a miss** (nothing held locally for (client, service), whether or not the request
//! carries a SCONE), the relay asks the owners (the first r of the rendezvous order) at
//! once, then, if none had it, all its other peers at once, each call bounded by
//! `--peer-timeout`. Of the answers that verify under the keys the relay trusts, the
//! newest is stored locally and attached. A peer answers from its own store only: a
//! query never travels further. Relays whose peer lists differ may rank peers
//! differently; asking every peer after the owners is what makes that harmless.
//!
//! **Against loss**, the mesh guarantees: in durable mode, once a client has a reply
//! whose SCONE the relay stored, that SCONE is also on r peers (or on every peer that
//! answered, if fewer), so the loss of that relay loses nothing; a client that
//! reconnects through any relay of the mesh finds its state, across server restarts
//! too. It does **not** guarantee: survival of the loss of every relay holding a
//! session at once (copies are in memory); the fast mode's window above; copies evicted
//! by a peer's bounds; re-copying: when a peer dies, the copies it held are not made
//! again elsewhere until the session's next change; membership changes (the peer list
//! is fixed at start).
//!
//! **Against replay**: a newer version replaces an older one on every relay, never the
//! reverse: a local put and a peer's copy of an older version of the same session are
//! both refused (a copy with [`mesh::MeshError::Stale`]). A relay that misses fetches the
//! newest version its peers hold before attaching, so an older SCONE replayed through
//! *another* relay of the mesh is replaced by the newest, as long as a relay holding the
//! newest answers in time. Not covered: the fast mode's window; a replay while the
//! holders of the newest are unreachable; a relay that already holds an older version
//! locally (it does not ask its peers on a hit, so two relays serving one client at once
//! may each attach their own newest); and everything the single relay does not cover,
//! above. Expiry needs no messages: every copy lives until the SCONE's own expiry at
//! most, on every relay. A SCONE a server refuses is forgotten locally and, best effort,
//! on every peer, so a later miss does not fetch it back.
//!
//! **Mesh links**: peers prove, both ways, that they hold the mesh secret (32 random
//! bytes; hex or base64) with a keyed blake3 MAC over fresh nonces from both ends,
//! before any request is read; a connection that fails is closed. So a stranger can
//! neither plant, query nor forget copies. Copies and answers are also verified against
//! the trusted keys, so even a holder of the secret can plant only genuine SCONEs, and
//! never an older one over a newer. Not covered: the links are not encrypted, and an
//! attacker on the path can read client IDs (bearer secrets) and SCONEs, or inject
//! into a connection after its handshake. Run the mesh on a private network; TLS for
//! mesh links is not built. Whoever holds the secret and a client ID can query that
//! client's SCONEs.
//!
//! # Not built yet
//! - **Mesh**: TLS on mesh links; backoff for dead peers (each miss asks them again,
//!   bounded by `--peer-timeout`); re-copying after a peer's loss; dynamic membership.
//! - **Multi-tier state**: a back-end's SCONE that comes back through a front-end (an
//!   entrusting client) is passed to the client but not held, so a thin client's tiers
//!   behind the front-end start over on each call.
//! - Speed: a relay hop costs 1.16x the p50 of HAProxy in TCP mode doing the same hop,
//!   and 0.52x its throughput with 64 calls in flight (`cargo bench -p scone-router
//!   --bench hop`, two cores shared by clients, server and proxy): about 9 µs of CPU
//!   per call against HAProxy's 1.5, spent decoding and encoding the envelopes, the
//!   store, and the few signature checks a shared root does not settle.
//! - Upstream connections: one per upstream address and listener worker thread, so a
//!   call stays on its thread. A request whose connection is lost is sent again (see
//!   [`UpstreamConfig`]); telling a request that never left from one that did needs the
//!   connection's dispatch task, which `scone_rpc::client::connect` keeps to itself.
//! - TLS on either side of the relay (`scone_rpc::server::run_tls` and `connect_tls` are
//!   there to use).
//!
//! # Layout
//! - [`config`]: [`RelayConfig`], routes and trusted keys (`SERVICE=...`), the TOML file,
//!   [`MeshConfig`].
//! - [`relay`]: [`Relay`], the `Serve` implementation: route, attach, forward, and keep
//!   the reply's SCONEs (in the background, or first in a durable mesh).
//! - `attach`: the request side: which SCONE goes upstream; the replay guard.
//! - `upstream`: the servers behind each route: round-robin, lazy connections, backoff,
//!   retry after a lost connection.
//! - `trust`: keys bound to services, and the Merkle roots already verified.
//! - `pending`: verifications in flight, which a client's next request waits for.
//! - [`store`]: [`Store`], where held SCONEs live, and [`MemoryStore`].
//! - [`mesh`]: [`MeshStore`], copies on peers and queries on a miss; the peer links.
//! - [`stats`]: the counters ([`StatsSnapshot`]).
//! - [`metrics`]: [`Metrics`], the counters on a Prometheus `/metrics` endpoint
//!   (`--metrics ADDR`).
//! - [`client_tag`]: client IDs as logs show them.
//! - [`error`]: [`ConfigError`], [`RelayError`].

#![deny(missing_docs)]

mod attach;
pub mod client_tag;
pub mod config;
pub mod error;
pub mod mesh;
pub mod metrics;
mod pending;
pub mod relay;
pub mod stats;
pub mod store;
mod trust;
mod upstream;

pub use crate::client_tag::ClientTag;
pub use crate::config::{ConfigFile, MeshConfig, RelayConfig, Route, TrustEntry, UpstreamConfig};
pub use crate::error::{ConfigError, RelayError};
pub use crate::mesh::{MeshSecret, MeshStats, MeshStore};
pub use crate::metrics::Metrics;
pub use crate::relay::Relay;
pub use crate::stats::StatsSnapshot;
pub use crate::store::{HoldKey, MemoryStore, Store};
