//! The relay mesh: each stored SCONE copied to r peer relays, and a relay that misses
//! asks its peers, so that a client's state survives the loss of the relay that held it.
//!
//! # Layout
//! - [`MeshSecret`]: the key relays of one mesh share (`scone_rpc`'s
//!   [`LinkSecret`](scone_rpc::peer_link::LinkSecret)). Peers prove, both ways, that they
//!   hold it ([`scone_rpc::peer_link`]: keyed blake3 MACs over fresh nonces, under the
//!   label `scone-mesh v1`), before any request is read.
//! - [`MeshError`]: a peer's refusal of a copy; the peer calls (`wire`, a tarpc service).
//! - [`MeshLink`]: an authenticated connection to one peer ([`LinkError`]).
//! - `peers`: the links to every peer, and their rendezvous order for a key.
//! - [`MeshStore`]: the [`Store`](crate::Store) that copies and queries; `listener`, its
//!   service to peers ([`MeshStore::run`]).

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

/// The label of the mesh's link handshake ([`scone_rpc::peer_link`]); every MAC covers
/// it. Part of the mesh's wire format (v1): peers with another label refuse each other.
const HANDSHAKE_LABEL: &str = "scone-mesh v1";
