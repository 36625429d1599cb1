//! Peers over TCP: a node serves its replica to peers with [`serve_peers`], and calls
//! them with [`TcpTransport`].
//!
//! The protocol is the cluster's own and small: numbered calls (copies, fetch, delete)
//! and their answers, as postcard messages in `scone-rpc`'s length-delimited frames,
//! several in flight on one connection. It is on the path of every commit, so it does
//! without an RPC framework's tasks and channels: a caller's frame is written by one
//! short task, the peer answers it inline on the connection's own task, and the answer
//! goes from the link's reader straight to the caller.
//!
//! Copies and fetches carry SCONEs, which peers verify under the service's keys, so a
//! stranger can neither plant nor roll back state. With a cluster secret
//! ([`TcpTransport::with_secret`], [`serve_peers_with_secret`]) peers also prove, both
//! ways, that they hold it before any call (`scone_rpc::peer_link`, label
//! [`HANDSHAKE_LABEL`]), and every message after is sealed (a keyed blake3 tag over it
//! and its place in the stream), so a stranger can neither read nor end sessions, nor
//! alter, inject or replay a message on the way. Without a secret, a stranger who guesses a session's 128-bit endpoint ID can
//! read its SCONE, or end the session: run the peer port on the cluster's private
//! network. The links are not encrypted.
//!
//! # Layout
//! - `wire`: the messages, and the preamble a connection opens with (which names the
//!   protocol's version, so a node of another version is refused at connect).
//! - `server`: [`serve_peers`], a handler per connection.
//! - `client`: [`TcpTransport`], links to each peer: one per server worker, and one the
//!   other callers share.

mod client;
mod server;
mod wire;

pub use client::TcpTransport;
pub use server::{serve_peers, serve_peers_with_secret};

/// What the cluster's link handshake is keyed for: a relay mesh's secret cannot open it,
/// nor a node that speaks another version of the peer protocol (v3: the cluster's own
/// framing of calls, in place of tarpc's; v4: deltas without the version id only trusted
/// members needed).
pub const HANDSHAKE_LABEL: &str = "scone-cluster v4";

/// Most callers with a link of their own to each peer, in a [`TcpTransport`]: the
/// threads that call from a single-threaded runtime (a server's workers), the first
/// this many; every other caller shares one link per peer. So a transport has at most
/// `MAX_LANES + 1` links open to a peer at once.
pub const MAX_LANES: usize = 16;

/// Most copies in one message to a peer.
pub const MAX_COPIES_PER_MESSAGE: usize = 256;

/// Most SCONE bytes in one message to a peer (a frame holds 1 MiB).
const MAX_COPY_BYTES_PER_MESSAGE: usize = 512 * 1024;

/// Turns on TCP keepalive, so a peer that vanished without closing the connection (a
/// machine lost, a network cut) is found within a few minutes, on an idle link too, and
/// its connection and slot are freed; links to live peers stay open however idle.
fn keep_alive(stream: &tokio::net::TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(30))
        .with_interval(std::time::Duration::from_secs(10));
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&probes) {
        tracing::debug!(%error, "could not turn on TCP keepalive on a peer link");
    }
}

/// Most copies waiting on one link to a peer (so at most `MAX_LANES + 1` times this for
/// a peer); past it, a copy fails at once (the peer is slow or gone: the placement
/// tries another) rather than growing the queue.
pub const MAX_COPIES_WAITING: usize = 4096;
