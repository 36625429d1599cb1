//! One connection, over any stream: its requests, its guards, and how it ends.

use std::net::SocketAddr;

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel, Serve};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};

use super::guard::{self, Activity, Guarded};
use super::{signer, ServerConfig};
use crate::codec::Transport;
use crate::envelope::{RequestEnvelope, ResponseEnvelope};

/// Who is on the other end of a connection, for the logs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peer(pub(super) Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("stream"),
        }
    }
}

/// A connection on a worker: what it needs besides its stream.
pub(super) struct Connection<S> {
    /// Who is on the other end, for the logs.
    pub(super) peer: Peer,
    /// The service, cloned for each request.
    pub(super) serve: S,
    /// Limits and timeouts.
    pub(super) config: ServerConfig,
    /// Tells the connection to close at shutdown.
    pub(super) shutdown_rx: broadcast::Receiver<()>,
    /// Held by the connection and each of its requests: the worker waits for all to drop.
    pub(super) done: mpsc::Sender<()>,
}

impl<S> Connection<S>
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + 'static,
{
    /// Serves requests from `io` until the peer leaves, a guard gives up on it, or the
    /// server shuts down. Runs on a worker's `LocalSet`.
    pub(super) async fn serve<Io>(mut self, io: Io)
    where
        Io: AsyncRead + AsyncWrite + 'static,
    {
        let peer = self.peer;
        let activity = Activity::new(self.config.max_in_flight_bytes_per_connection);
        let transport = Guarded::new(
            Transport::new(io, self.config.max_frame_bytes),
            activity.clone(),
        );
        let channel = BaseChannel::with_defaults(transport)
            .max_concurrent_requests(self.config.max_in_flight_per_connection);
        let requests = channel.execute(self.serve).for_each(|request| {
            let ticket = activity.start_request();
            let in_flight = signer::InFlight::enter();
            let done = self.done.clone();
            // Boxed: the task then holds a pointer, not the request's whole state machine,
            // which the runtime would otherwise copy in and out of it.
            let request = Box::pin(request);
            tokio::task::spawn_local(async move {
                request.await;
                drop(in_flight);
                drop(ticket);
                drop(done);
            });
            std::future::ready(())
        });
        let watch = guard::watch(
            &activity,
            self.config.idle_timeout,
            self.config.frame_timeout,
        );
        tokio::select! {
            () = requests => tracing::debug!(%peer, "connection closed"),
            _ = self.shutdown_rx.recv() => tracing::debug!(%peer, "connection closed for shutdown"),
            expired = watch => tracing::debug!(%peer, reason = %expired, "connection closed by the server"),
        }
    }
}
