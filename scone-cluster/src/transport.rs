//! How nodes reach each other: the [`PeerTransport`] seam, over TCP for real
//! ([`tcp`]) and in memory for tests ([`memory`]: links that drop, delay, cut, and
//! acknowledgements held back).

pub mod memory;
pub mod tcp;

use std::future::Future;
use std::net::SocketAddr;

use crate::replica::{DeltaCopy, ReplicaRefusal, SessionCopy};
use crate::session::SessionId;

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer could not be reached, or the link failed or timed out on the way.
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable {
        /// The peer's address.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The peer answered, refusing.
    #[error("peer {peer} refused: {refusal}")]
    Refused {
        /// The peer's address.
        peer: SocketAddr,
        /// Why.
        refusal: ReplicaRefusal,
    },
}

/// What a transport counts of its links (all zero for one that counts nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Connections to peers opened (a transport may keep several to one peer: see
    /// [`tcp::TcpTransport`]); each after the last one failed counts again.
    pub opened: u64,
    /// Connections to peers that failed (closed, timed out, or broke the protocol).
    pub failed: u64,
    /// Messages of copies sent; copies sent over these is how many share one.
    pub copy_messages: u64,
}

/// Calls to peers, by their peer address. Every call is bounded by the transport's
/// own timeout.
pub trait PeerTransport: Send + Sync + 'static {
    /// Asks `peer` to keep `copy`; `Ok` once it has.
    fn replicate(
        &self,
        peer: SocketAddr,
        copy: SessionCopy,
    ) -> impl Future<Output = Result<(), PeerError>> + Send;

    /// Asks `peer`, which holds the version before, to keep the version `copy` makes of
    /// it; refused `OutOfStep` if it does not hold that version.
    fn replicate_delta(
        &self,
        peer: SocketAddr,
        copy: DeltaCopy,
    ) -> impl Future<Output = Result<(), PeerError>> + Send;

    /// What `peer` holds of `session` (unverified), if anything.
    fn fetch(
        &self,
        peer: SocketAddr,
        session: SessionId,
    ) -> impl Future<Output = Result<Option<SessionCopy>, PeerError>> + Send;

    /// Asks `peer` to drop `session`; `Ok(held)` says whether it held it.
    fn delete(
        &self,
        peer: SocketAddr,
        session: SessionId,
    ) -> impl Future<Output = Result<bool, PeerError>> + Send;

    /// Its links' counters so far.
    fn link_stats(&self) -> LinkStats {
        LinkStats::default()
    }
}
