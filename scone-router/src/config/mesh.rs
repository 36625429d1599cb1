//! The mesh's settings: peers, the secret, copies and timeouts.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::mesh::MeshSecret;

/// Settings of the relay mesh ([`MeshStore`](crate::MeshStore)). The mesh is on when a
/// [`secret`](Self::secret) is given.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Where this relay listens for its peers (`--mesh-listen`); peers name this address
    /// in their `--peer`. None: it copies to and queries its peers, but serves none.
    pub listen: Option<SocketAddr>,
    /// The other relays' mesh addresses (`--peer`, repeatable), this relay excluded.
    pub peers: Vec<SocketAddr>,
    /// The key every relay of the mesh shares (`--mesh-secret-file`).
    pub secret: Option<MeshSecret>,
    /// Peers each stored SCONE is copied to (`--replicas`, default 1), placed by
    /// rendezvous hashing of (client, service) over [`peers`](Self::peers).
    pub replicas: NonZeroUsize,
    /// Copy after the reply has gone on (`--fast`), rather than before (default: before,
    /// the durable mode). See the crate docs for what each guarantees.
    pub fast: bool,
    /// Each peer call's bound: connect, handshake, and each request (`--peer-timeout`,
    /// default 500 ms).
    pub peer_timeout: Duration,
    /// Most peer connections served at once (default 256).
    pub max_peer_connections: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: None,
            peers: Vec::new(),
            secret: None,
            replicas: NonZeroUsize::MIN,
            fast: false,
            peer_timeout: Duration::from_millis(500),
            max_peer_connections: 256,
        }
    }
}
