//! SCONE: signed state-caching objects.
//!
//! An RPC server that keeps no per-client state mints a *SCONE* (a signed state object)
//! and attaches it to its reply; whoever holds it (the client, or anyone it entrusts)
//! hands it back with the next request, and the server restores its state from it. Think
//! of an HTTP cookie, made tamper-proof, cacheable in the network, and verifiable by anyone
//! with the service's public key.
//!
//! ```
//! use scone::{Draft, EndpointId, KeyRing, Minter, ServiceId, SigningKey, Verifier};
//!
//! let key = SigningKey::generate()?;
//! let cart = ServiceId::new("cart")?;
//! let minter = Minter::new(key.clone());
//! let scone = minter.mint(Draft::new(cart.clone(), EndpointId::random()?).with_state(*b"2 apples"))?;
//!
//! // The text form travels anywhere; the verifier needs only the public key.
//! let text = scone.to_text();
//! // A key is trusted for the services it signs for, and vouches for no other.
//! let verifier = Verifier::new(KeyRing::for_service(cart.clone(), [key.public_key()])?)
//!     .for_service(cart);
//! let back = verifier.decode(scone::Scone::from_text(&text)?.encoded().clone())?;
//! assert_eq!(back.state(), b"2 apples");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`ids`]: service, endpoint, object, key and client identifiers.
//! - [`scone`](mod@scone): the object, its accessors, wire encoding (format version 1) and text form.
//! - [`format`](mod@format): the wire format, byte by byte, for implementers in other languages
//!   (`FORMAT.md`, with test vectors in `tests/vectors.json`).
//! - [`seal`]: the signature over a Merkle root of blake3 digests, and the issuer-only tag.
//! - [`keys`]: signing and public keys, key IDs, key files.
//! - [`mint`]: [`Minter`] turns a [`Draft`] into a signed SCONE, alone or in a batch.
//! - [`presign`]: offline/online Ed25519 signing with precomputed nonces.
//! - [`verify`]: [`Verifier`] and its [`KeyRing`]: every check before a handler sees state;
//!   [`VerifiedRoots`] lets a verifier check each group's signature once.
//! - [`bundle`]: [`SconeBundle`], the SCONEs one message carries, one per service.
//! - [`cache`]: [`SconeCache`], a bounded LRU by service ID (clients) or client and service (relays).
//! - [`context`]: the task-local context a handler reads and writes its state through.
//! - [`sealed`]: sealed state, which the holder cannot read: XChaCha20-Poly1305 under a key
//!   derived from the signing key.
//! - [`clock`]: where time comes from; a manual clock for tests.
//! - [`error`]: the typed errors.
//!
//! # Trust
//! The service signs with an ed25519 key; everyone else holds only public keys, looked up
//! by the 8-byte key ID each SCONE names, so keys rotate while older SCONEs stay verifiable
//! until they expire. Each trusted key is bound to the services it signs for
//! ([`KeyRing::trust`]): one service's key never vouches for another service's SCONEs,
//! even in a verifier that trusts both. The signature covers a blake3 digest (with a
//! domain-separation context) of the exact encoded claims. Nothing unsigned, forged,
//! tampered with, expired, oversize, addressed to another service, signed by a key not
//! trusted for its service, or (with [`VerifierConfig::max_ttl`]) longer-lived than
//! allowed passes [`Verifier::verify`]. The issuing server's shortcut, the issuer tag,
//! accepts exactly what the signature check would (see [`seal`]).
//!
//! Signing keys load only from files their owner alone can read
//! ([`SigningKey::load`]). Precomputed signing nonces ([`presign`]) are safe across
//! `fork`, not across VM snapshots or checkpoint/restore: turn them off where those
//! happen.
//!
//! What this layer does **not** stop: a holder may replay a SCONE it holds until it
//! expires, and may read its state unless it is [`sealed`]. Version numbers let a replay
//! guard (`scone-rpc`'s `server::replay`) and caches refuse older versions of a session
//! they have seen; keep TTLs short where replay matters.

#![deny(missing_docs)]

pub mod bundle;
pub mod cache;
pub mod clock;
pub mod context;
pub mod error;
#[doc = include_str!("../FORMAT.md")]
pub mod format {}
pub mod ids;
pub mod keys;
pub mod mint;
pub mod presign;
pub mod scone;
pub mod seal;
pub mod sealed;
pub mod verify;

pub use crate::bundle::{BundleLimits, SconeBundle};
pub use crate::cache::{CacheLimits, PutOutcome, SconeCache};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::{
    BundleError, ContextError, DecodeError, InvalidId, KeyError, MintError, RejectReason,
    VerifyError,
};
pub use crate::ids::{ClientId, EndpointId, KeyId, ObjectId, ServiceId};
pub use crate::keys::{PublicKey, SigningKey};
pub use crate::mint::{Draft, Minter, MinterConfig};
pub use crate::scone::{Scone, StateFormat, Status, DEFAULT_MAX_SCONE_BYTES, FORMAT_VERSION};
pub use crate::sealed::{SealBinding, SealedError, StateSealer};
pub use crate::verify::{KeyRing, SignatureCheck, VerifiedRoots, Verifier, VerifierConfig};
