//! What peers say to each other: a small tarpc service, over `scone-rpc`'s postcard
//! framing, on connections authenticated by the mesh handshake.

use scone::ServiceId;
use serde::{Deserialize, Serialize};

/// Why a peer did not keep a copy. Retry policy: [`Stale`](Self::Stale) means the peer
/// holds a newer version, so the copy is as good as kept (an acknowledgement);
/// the others are final for that SCONE on that peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The SCONE does not decode, or does not verify under the keys the peer trusts for
    /// its service.
    #[error("the copy does not verify under the keys trusted for its service")]
    Untrusted,
    /// The peer holds a newer version of the session: the copy is not kept.
    #[error("the peer holds a newer version")]
    Stale,
    /// The SCONE is expired or larger than the peer's store.
    #[error("the copy is expired or too large to keep")]
    Unstorable,
}

/// A SCONE copied to a peer, for the client it was issued to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Copy {
    /// The client ID's bytes (a bearer secret: the link must be trusted).
    pub(crate) client: [u8; 16],
    /// The SCONE, encoded; it is filed under its own service.
    pub(crate) scone: Vec<u8>,
}

/// The mesh's peer-to-peer calls.
#[tarpc::service]
pub(crate) trait Mesh {
    /// Keeps `copy` if it verifies and is not older than what is held.
    async fn store(copy: Copy) -> Result<(), MeshError>;
    /// The SCONE held for (`client`, `service`), encoded, if any. Answered from the
    /// peer's own store only: a query never travels further.
    async fn query(client: [u8; 16], service: ServiceId) -> Option<Vec<u8>>;
    /// Drops `refused` (a server refused it) if the peer still holds that very version.
    async fn forget(refused: Copy) -> bool;
}
