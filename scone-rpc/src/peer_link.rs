//! Authenticated peer links: two processes that share a secret prove it to each other
//! at connect, before either reads a request.
//!
//! For links between cooperating servers (a relay mesh, a cluster's replication), not
//! for clients: every peer holds the same [`LinkSecret`], and [`connect`] / [`accept`]
//! run a mutual challenge-response over any `AsyncRead + AsyncWrite` stream (TCP, TLS,
//! an in-memory `tokio::io::duplex`), after which the stream carries whatever protocol
//! the peers speak. A peer that cannot prove the secret in time gets an error and the
//! caller drops the stream.
//!
//! Each protocol passes its own **label** (`"scone-mesh v1"` for the relay mesh), which
//! every MAC covers: a peer of one protocol cannot complete the handshake of another,
//! even with the same secret. The links are authenticated, not encrypted: run them on a
//! private network or inside TLS.
//!
//! ```
//! use std::time::Duration;
//! use scone_rpc::peer_link::{self, LinkSecret};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let secret = LinkSecret::from_bytes([7; 32]); // in practice: LinkSecret::load(path)
//! let (mut a, mut b) = tokio::io::duplex(256);
//! let limit = Duration::from_secs(1);
//! let (accepted, connected) = tokio::join!(
//!     peer_link::accept(&mut a, &secret, "my-protocol v1", limit),
//!     peer_link::connect(&mut b, &secret, "my-protocol v1", limit),
//! );
//! let (mut seal, _) = connected?.split(); // both ends now know the other holds `secret`
//! let (_, mut open) = accepted?.split();
//! let tag = seal.seal(b"hello");
//! assert!(open.open(b"hello", &tag).is_ok());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`LinkSecret`]: the shared key (32 random bytes, read as hex or base64; never
//!   printed, wiped on drop), and [`LinkSecretError`].
//! - [`connect`] / [`accept`]: the handshake (keyed blake3 MACs over fresh nonces from
//!   both ends), and its wire format.
//! - [`serve_connections`]: the accepting side's listener (bounded connections, a task
//!   each, graceful shutdown), for a protocol's own handler.
//! - [`LinkKeys`]: what the handshake gives each end to seal the messages it sends and
//!   open those it reads, for protocols that need each message authenticated (a link
//!   whose peers trust what arrives on it), not only the connection.

mod handshake;
mod sealing;
mod secret;
mod serve;

pub use handshake::{accept, connect};
pub use sealing::{LinkKeys, OpeningKey, SealingKey, Tag, TamperedMessage};
pub use secret::{LinkSecret, LinkSecretError};
pub use serve::serve_connections;
