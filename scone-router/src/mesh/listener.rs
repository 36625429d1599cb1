//! Serving peers (under `scone_rpc::peer_link::serve_connections`: a permit before each
//! accept, bounding connections): prove the secret both ways, then answer the mesh calls
//! until the peer leaves or shutdown.

use std::future::Future;
use std::io;

use futures::StreamExt;
use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{TcpListener, TcpStream};

use super::store::MeshStore;
use super::wire::Mesh;

impl MeshStore {
    /// Serves this relay's peers on `listener` until `shutdown` completes; then closes
    /// their connections and returns once every handler has stopped. A connection that
    /// does not prove the mesh secret within the peer timeout is closed before any
    /// request is read.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
        let config = self.config().clone();
        let secret = config.secret.clone().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the mesh needs a secret")
        })?;
        let timeout = config.peer_timeout;
        let serving = |stream, peer: std::net::SocketAddr| {
            let (store, secret) = (self.clone(), secret.clone());
            async move {
                if let Err(error) = serve(stream, store, &secret, timeout).await {
                    tracing::warn!(%peer, %error, "mesh connection refused or failed");
                }
            }
        };
        let connections = config.max_peer_connections;
        scone_rpc::peer_link::serve_connections(listener, connections, shutdown, serving).await
    }
}

/// One peer connection: the handshake, then its requests, each on its own task.
async fn serve(
    mut stream: TcpStream,
    store: MeshStore,
    secret: &super::MeshSecret,
    timeout: std::time::Duration,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    scone_rpc::peer_link::accept(&mut stream, secret, super::HANDSHAKE_LABEL, timeout).await?;
    let transport = Transport::new(stream, DEFAULT_MAX_FRAME_BYTES);
    BaseChannel::with_defaults(transport)
        .execute(store.serve())
        .for_each(|request| {
            tokio::spawn(request);
            std::future::ready(())
        })
        .await;
    Ok(())
}
