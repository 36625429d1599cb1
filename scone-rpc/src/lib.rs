//! SCONEs on tarpc: services whose servers keep no per-client state.
//!
//! A [`SconeLayer`] wraps any tarpc service. Per request it verifies the SCONEs that came
//! with it (a forged, tampered, expired, wrong-service or unknown-key SCONE is refused
//! with a typed error before the handler runs), puts them in the task-local context, runs
//! the handler, and attaches a freshly minted SCONE to the reply **only when the state
//! changed**. On the client side, a [`SconeClient`] stub keeps the SCONEs that come back
//! and attaches them to the next call. State types derive [`SconeState`] for typed access
//! with per-field change tracking.
//!
//! ```
//! use scone_rpc::{SconeClient, SconeLayer, SconeState, SconeStore, SigningKey, StateError};
//! use serde::{Deserialize, Serialize};
//!
//! // The state: a plain struct. The service's name is written here, once.
//! #[derive(SconeState, Serialize, Deserialize, Default)]
//! #[scone(service = "counter")]
//! struct Count {
//!     hits: u64,
//! }
//!
//! #[tarpc::service]
//! trait Counter {
//!     async fn hit() -> Result<u64, String>;
//! }
//!
//! #[derive(Clone)]
//! struct CounterServer;
//!
//! impl Counter for CounterServer {
//!     async fn hit(self, _: tarpc::context::Context) -> Result<u64, String> {
//!         let mut count = Count::load().map_err(|e: StateError| e.to_string())?;
//!         *count.hits_mut() += 1; // a write goes through `_mut`, which marks the field
//!         let hits = count.hits;
//!         count.save().map_err(|e| e.to_string())?; // re-signed only if it changed
//!         Ok(hits)
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! let layer = SconeLayer::for_state::<Count>(SigningKey::generate()?)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let serve = layer.wrap(CounterServer.serve());
//! tokio::spawn(scone_rpc::server::run(listener, serve, Default::default(), std::future::pending::<()>()));
//!
//! let channel = scone_rpc::client::connect(addr).await?;
//! let client = CounterClient::from(SconeClient::caching_for::<Count>(channel, SconeStore::default())?);
//! let hit = || async { client.hit(tarpc::context::current()).await?.map_err(anyhow::Error::msg) };
//! assert_eq!(hit().await?, 1);
//! assert_eq!(hit().await?, 2); // the count came back in a SCONE
//! # Ok(()) }
//! ```
//!
//! # Errors in handlers
//! [`SconeState::load`] and `save` return [`StateError`] (no request context, a state that
//! does not decode as this type). A handler that returns its own error type converts it
//! once, with `From`, and uses `?` everywhere:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize, Debug, thiserror::Error)]
//! enum CartError {
//!     #[error("cart state unavailable: {0}")]
//!     State(String),
//! }
//!
//! impl From<scone_rpc::StateError> for CartError {
//!     fn from(error: scone_rpc::StateError) -> Self {
//!         // The error crosses the wire as text: keep its whole chain.
//!         CartError::State(format!("{:#}", anyhow::Error::from(error)))
//!     }
//! }
//! ```
//!
//! On the client, a refusal (a SCONE that is expired, forged, stale...) arrives as tarpc's
//! `RpcError`; [`refusal`] reads its kind, and [`CallError`] displays it for people.
//!
//! # Defaults
//! What a service gets unless it says otherwise ([`server::LayerConfig`],
//! [`server::ServerConfig`], `scone::BundleLimits`, `scone::CacheLimits`):
//!
//! | setting | default |
//! |---|---|
//! | SCONE lifetime (`ttl`) | 30 minutes; a read past half of it renews the SCONE (`renew`) |
//! | clock skew allowed (`clock_skew`) | 30 s either way |
//! | largest SCONE (`max_scone_bytes`) | 64 KiB |
//! | SCONEs per request (bundle) | 16, 256 KiB together |
//! | largest frame (`max_frame_bytes`) | 1 MiB |
//! | connections / requests in flight per connection | 1,024 / 256 |
//! | idle connection / slow frame / TLS handshake timeouts | 120 s / 10 s / 10 s |
//! | client store | 10,000 SCONEs, 64 MiB |
//! | replay guard, sealed state | off |
//!
//! # Layout
//! - [`envelope`]: the request and reply envelopes and their wire format (version 1).
//! - [`codec`]: postcard in length-delimited frames over any byte stream, with size
//!   limits; messages are decoded in place (a SCONE in a request is a slice of its frame,
//!   not a copy).
//! - [`server`]: [`SconeLayer`] (the `Serve` wrapper) and [`server::run`] /
//!   [`server::run_tls`] (the listener), with timeouts and byte budgets against idle and
//!   slow peers; [`server::serve_stream`] serves one connection over any stream.
//!   [`server::placement`]: where sessions live between requests ([`server::Placement`]):
//!   with the client by default, or on servers (a cluster), with the same handler.
//! - [`client`]: [`SconeClient`] (the `Stub` wrapper): caching, thin and entrusting modes.
//! - [`state`]: [`SconeState`], the derive's trait, and change tracking.
//! - [`error`]: typed errors, [`refusal`] to read a refusal out of a tarpc error, and
//!   [`retry_advice`]: whether a failed call is safe to send again, to another server.
//! - [`tls`]: rustls re-exported, and how to set up TLS on both sides.
//! - [`peer_link`]: links between servers that share a secret, proved both ways at
//!   connect ([`peer_link::LinkSecret`], [`peer_link::connect`] / [`peer_link::accept`]).
//! - `metrics` (cargo feature `metrics`): counters read at each scrape (a `Collect` per
//!   place that keeps some) on a Prometheus `/metrics` endpoint.
//!
//! # What each party can verify
//! Every SCONE is signed with the service's ed25519 key (see the `scone` crate), so a
//! client, relay or peer holding the public key can verify any SCONE on its own. The
//! issuing servers, which hold the signing key, check their own SCONEs by a keyed blake3
//! tag instead (one hash), and fall back to the signature for SCONEs signed by older keys.
//! The tag is made after signing and covers the claims, the Merkle path and the
//! signature, so the issuer and every public verifier agree on every SCONE: one whose
//! signature was altered is refused by both.
//! SCONEs minted at the same moment share one signature over a Merkle root (group
//! commit), so a busy server signs once per group while a lone caller never waits; each
//! SCONE still verifies alone. Each worker thread gathers its own groups, and
//! [`SconeLayer::signing_stats`] tells how large they
//! are. The expensive half of each signature is precomputed on a background thread of
//! idle priority (`scone::presign`); the signatures are standard Ed25519.
//!
//! # Replay
//! A SCONE is a bearer token: whoever holds one may send it again while it is valid, and
//! by default a server, which keeps nothing, cannot tell an old SCONE of a session from
//! the newest. Where state must not roll back (a balance, a counter of uses), turn on the
//! **replay guard** ([`server::replay`], `LayerConfig::replay_guard`): the server then
//! keeps, per live session, the newest version it issued (a [`server::replay::Watermark`]:
//! about 80 bytes per session with the hash table's overhead, measured in `vs_baseline` as
//! 7.5 MB more server memory at 100,000 sessions, where the stateful baseline keeps its
//! whole state, 33 MB for a 256-byte one) and refuses an older one with
//! `RefusalKind::Scone(RejectReason::Stale)`; two requests that race from one version
//! cannot both write (no forked history). What each placement prevents:
//!
//! | placement | who holds the SCONE | an old SCONE sent again |
//! |---|---|---|
//! | client-held, default | the client | accepted until it expires: keep TTLs short |
//! | client-held, replay guard | the client | refused (`stale`) by every server sharing the guard's store; an in-memory guard forgets on restart |
//!
//! Either way a SCONE cannot be forged, altered, moved to another service or session, or
//! used past its expiry; its state can be read by its holder unless sealed.
//!
//! # Expiry and renewal
//! A SCONE lives for `LayerConfig::ttl` (30 minutes by default) plus the clock skew
//! allowed (30 s). A request that reads without changing anything, past half the
//! SCONE's lifetime, gets a renewed SCONE back (`LayerConfig::renew`), so a session
//! that is only read stays alive; an expired SCONE earns the typed
//! `RefusalKind::Scone(RejectReason::Expired)`, and the client drops it so that its next
//! call starts a new session.

#![deny(missing_docs)]

pub mod client;
pub mod codec;
pub mod envelope;
pub mod error;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod peer_link;
pub mod server;
mod spare;
pub mod state;
pub mod tls;

pub use crate::client::{SconeClient, SconeStore};
pub use crate::envelope::{ClientId, Refusal, RefusalKind};
pub use crate::error::{refusal, retry_advice, CallError, ClientError, RetryAdvice};
pub use crate::server::SconeLayer;
pub use crate::state::{Delta, DeltaApplier, SconeState, StateError, Tracker};

// What every user needs from the `scone` crate, so that one dependency is enough.
/// The `scone` crate: the object itself (minting, verification, bundles, caches).
pub use scone;
pub use scone::{
    Clock, KeyRing, ManualClock, PublicKey, RejectReason, ServiceId, SigningKey, SystemClock,
    Verifier, VerifierConfig,
};

#[doc(hidden)]
pub mod __private {
    pub use postcard;
}
