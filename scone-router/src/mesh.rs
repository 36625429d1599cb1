//! The relay mesh: each stored SCONE copied to r peer relays, and a relay that misses
//! asks its peers, so that a client's state survives the loss of the relay that held it.
//!
//! # Layout
//! - [`MeshSecret`]: the key relays of one mesh share.
//! - `handshake`: peers prove, both ways, that they hold it (keyed blake3 MACs over fresh
//!   nonces), before any request is read.
//! - [`MeshError`]: a peer's refusal of a copy; the peer calls (`wire`, a tarpc service).
//! - [`MeshLink`]: an authenticated connection to one peer ([`LinkError`]).
//! - `peers`: the links to every peer, and their rendezvous order for a key.
//! - [`MeshStore`]: the [`Store`](crate::Store) that copies and queries; `listener`, its
//!   service to peers ([`MeshStore::run`]).

mod handshake;
mod link;
mod listener;
mod peers;
mod secret;
mod store;
mod wire;

pub use link::{LinkError, MeshLink};
pub use secret::MeshSecret;
pub use store::{MeshStats, MeshStore};
pub use wire::MeshError;
