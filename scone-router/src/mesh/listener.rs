//! Serving peers: accept (a permit first, bounding connections), prove the secret both
//! ways, then answer the mesh calls until the peer leaves or shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;

use futures::StreamExt;
use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};

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
        let permits = Arc::new(Semaphore::new(config.max_peer_connections.max(1)));
        let (stop_tx, _) = broadcast::channel::<()>(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit.map_err(io::Error::other)?,
                _ = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "mesh accept failed");
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let (store, secret, mut stop_rx, done) = (
                self.clone(),
                secret.clone(),
                stop_tx.subscribe(),
                done_tx.clone(),
            );
            let timeout = config.peer_timeout;
            tokio::spawn(async move {
                tokio::select! {
                    served = serve(stream, store, &secret, timeout) => if let Err(error) = served {
                        tracing::warn!(%peer, %error, "mesh connection refused or failed");
                    },
                    _ = stop_rx.recv() => {}
                }
                drop((permit, done));
            });
        }
        drop(stop_tx);
        drop(done_tx);
        let _ = done_rx.recv().await;
        Ok(())
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
