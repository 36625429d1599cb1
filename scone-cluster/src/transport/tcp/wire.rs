//! What peers send each other: numbered calls and their answers, as postcard messages
//! in `scone-rpc`'s length-delimited frames, after a preamble that names the protocol.

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::replica::{CopyItem, ReplicaRefusal, SessionCopy};
use crate::session::SessionId;

/// What a connecting node writes first, so a node of another protocol version (or a
/// stray client) is told apart at once rather than by a frame that fails to decode.
pub(super) const PREAMBLE: &[u8; 16] = b"scone-cluster/3\n";

/// A call to a peer; its answer carries the same `id`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Call {
    pub id: u64,
    pub ask: Ask,
}

/// What a call asks.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Ask {
    /// Keep each of these copies (see `Replica::accept_item`); an answer for each, in order.
    Copies(Vec<CopyItem>),
    /// What the peer holds of the session, from its own store.
    Fetch(SessionId),
    /// Drop the session (it was ended); whether it was held.
    Delete(SessionId),
}

/// The answer to call `id`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Answer {
    pub id: u64,
    pub reply: Reply,
}

/// What a peer answers, one variant per [`Ask`].
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Reply {
    Copies(Vec<Result<(), ReplicaRefusal>>),
    Fetch(Option<SessionCopy>),
    Delete(bool),
}

/// Writes the preamble.
pub(super) async fn write_preamble(
    stream: &mut (impl AsyncWrite + Unpin),
    timeout: Duration,
) -> io::Result<()> {
    tokio::time::timeout(timeout, stream.write_all(PREAMBLE))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the preamble timed out"))?
}

/// Reads the preamble; an error if it is not ours.
pub(super) async fn read_preamble(
    stream: &mut (impl AsyncRead + Unpin),
    timeout: Duration,
) -> io::Result<()> {
    let mut preamble = [0; PREAMBLE.len()];
    tokio::time::timeout(timeout, stream.read_exact(&mut preamble))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no preamble in time"))??;
    if &preamble != PREAMBLE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expected the preamble {:?}, read {:?}: another version of the peer protocol, or not a cluster node",
                String::from_utf8_lossy(PREAMBLE),
                String::from_utf8_lossy(&preamble),
            ),
        ));
    }
    Ok(())
}
