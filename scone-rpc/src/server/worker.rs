//! A worker thread: adopts the connections handed to it and serves them on its own
//! single-threaded runtime, after a TLS handshake where the server has one.

use std::net::SocketAddr;

use tarpc::server::Serve;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

use super::connection::{Connection, Peer};
use super::ServerConfig;
use crate::envelope::{RequestEnvelope, ResponseEnvelope};

/// What a connection is wrapped in before its frames.
#[derive(Clone)]
pub(super) enum Security {
    /// Frames straight over TCP.
    Plain,
    /// Frames over TLS, after a handshake on the worker.
    Tls(TlsAcceptor),
}

/// An accepted connection on its way to a worker, holding its connection permit.
pub(super) struct Accepted {
    /// The socket, as a std stream: the worker registers it with its own reactor.
    pub(super) stream: std::net::TcpStream,
    /// Who connected, for the logs.
    pub(super) peer: SocketAddr,
    /// Released when the connection ends, letting the listener accept another.
    pub(super) permit: OwnedSemaphorePermit,
}

/// One worker thread: serves the connections handed to it on a single-threaded runtime.
pub(super) struct Worker<S> {
    /// The service, cloned for each connection.
    pub(super) serve: S,
    /// Limits and timeouts.
    pub(super) config: ServerConfig,
    /// Plain or TLS.
    pub(super) security: Security,
    /// Connections from the listener.
    pub(super) handoff_rx: mpsc::Receiver<Accepted>,
    /// The shutdown broadcast, resubscribed for each connection.
    pub(super) shutdown_rx: broadcast::Receiver<()>,
}

impl<S> Worker<S>
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + 'static,
{
    /// Serves connections until the listener stops handing them over, then waits for
    /// every connection and request to finish. Runs on a `LocalSet`.
    pub(super) async fn run(mut self) {
        // Every connection and request task holds a clone; when all are gone, we are done.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        while let Some(Accepted {
            stream,
            peer,
            permit,
        }) = self.handoff_rx.recv().await
        {
            let stream = match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%peer, %error, "could not adopt the connection");
                    continue;
                }
            };
            // Small request/reply messages: send them now rather than wait to coalesce.
            let _ = stream.set_nodelay(true);
            tracing::debug!(%peer, "connection accepted");
            let mut connection = Connection {
                peer: Peer(Some(peer)),
                serve: self.serve.clone(),
                config: self.config.clone(),
                shutdown_rx: self.shutdown_rx.resubscribe(),
                done: done_tx.clone(),
            };
            let security = self.security.clone();
            tokio::task::spawn_local(async move {
                match security {
                    Security::Plain => connection.serve(stream).await,
                    Security::Tls(acceptor) => {
                        let limit = connection.config.tls_handshake_timeout;
                        let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
                        let handshake = tokio::select! {
                            handshake = handshake => Some(handshake),
                            _ = connection.shutdown_rx.recv() => None,
                        };
                        match handshake {
                            Some(Ok(Ok(stream))) => connection.serve(stream).await,
                            Some(Ok(Err(error))) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                            }
                            Some(Err(_)) => tracing::debug!(%peer, "TLS handshake timed out"),
                            None => {}
                        }
                    }
                }
                drop(permit);
            });
        }
        drop(done_tx);
        let _ = done_rx.recv().await;
    }
}
