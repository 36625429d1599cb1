//! The server: a SCONE layer around a tarpc service, and a TCP listener to run it.
//!
//! The listener follows mini-redis: a permit from a semaphore is taken *before* each
//! accept (bounding connections), each connection is served by its own task with a cap on
//! in-flight requests (tarpc answers requests over the cap with an error instead of
//! queueing them), and shutdown is explicit: stop accepting, close connections, let the
//! handlers still running finish, then return.
//!
//! Connections are spread over worker threads, one per core, each running its own
//! single-threaded runtime. That is what lets us run any tarpc service: its handlers are
//! `async fn`s in a trait, whose futures generic code cannot prove `Send` (that needs
//! return-type notation, not stable yet), so they cannot go to `tokio::spawn`; on a worker
//! they run with `spawn_local`, which needs no `Send`.

mod serve;
mod signer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel, Serve};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};

use crate::codec::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::envelope::{RequestEnvelope, ResponseEnvelope};

pub use serve::{LayerConfig, SconeLayer, SconeServe};
pub use signer::SigningStats;

/// Settings of [`run`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Most requests in flight on one connection; more are answered with an error.
    pub max_in_flight_per_connection: usize,
    /// Largest frame read or written.
    pub max_frame_bytes: usize,
    /// Worker threads serving connections; 0 means one per available core.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_in_flight_per_connection: 256,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            workers: 0,
        }
    }
}

/// An accepted connection on its way to a worker, holding its connection permit.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// Serves `serve` on `listener` until `shutdown` completes, then waits for the handlers
/// still running to finish.
///
/// At shutdown connections are closed, so replies to requests still in flight may not be
/// delivered; the caller sees an error and retries, on this server or another holding the
/// same key. Nothing is lost, since the server holds no state. Errors of single
/// connections are logged and do not stop the server.
pub async fn run<S>(
    listener: TcpListener,
    serve: S,
    config: ServerConfig,
    shutdown: impl Future,
) -> std::io::Result<()>
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + Send + 'static,
{
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (notify_shutdown, _) = broadcast::channel::<()>(1);
    let mut handoffs = Vec::with_capacity(workers);
    let mut finished = Vec::with_capacity(workers);
    for index in 0..workers {
        let (handoff_tx, handoff_rx) = mpsc::channel::<Accepted>(64);
        let (finished_tx, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let worker = Worker {
            serve: serve.clone(),
            config: config.clone(),
            handoff_rx,
            shutdown_rx: notify_shutdown.subscribe(),
        };
        std::thread::Builder::new()
            .name(format!("scone-worker-{index}"))
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, worker.run());
                let _ = finished_tx.send(());
            })?;
        handoffs.push(handoff_tx);
        finished.push(finished_rx);
    }

    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let accept_loop = async {
        for next in (0..workers).cycle() {
            let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Hand the socket over as a std stream: the worker registers it with its own
            // runtime's reactor.
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%peer, %error, "could not hand the connection to a worker");
                    continue;
                }
            };
            if handoffs[next]
                .send(Accepted {
                    stream,
                    peer,
                    permit,
                })
                .await
                .is_err()
            {
                tracing::error!(worker = next, "worker stopped; dropping connection");
            }
        }
    };
    tokio::select! {
        () = accept_loop => {}
        _ = shutdown => tracing::info!("shutting down"),
    }
    drop(handoffs);
    drop(notify_shutdown);
    for worker_finished in finished {
        let _ = worker_finished.await;
    }
    Ok(())
}

/// One worker thread: serves the connections handed to it on a single-threaded runtime.
struct Worker<S> {
    serve: S,
    config: ServerConfig,
    handoff_rx: mpsc::Receiver<Accepted>,
    shutdown_rx: broadcast::Receiver<()>,
}

impl<S> Worker<S>
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + 'static,
{
    async fn run(mut self) {
        // Every connection and request task holds a clone; when all are gone, we are done.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        while let Some(accepted) = self.handoff_rx.recv().await {
            let stream = match accepted
                .stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(accepted.stream))
            {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(peer = %accepted.peer, %error, "could not adopt the connection");
                    continue;
                }
            };
            tracing::debug!(peer = %accepted.peer, "connection accepted");
            let transport = codec::server_transport(stream, self.config.max_frame_bytes);
            let channel = BaseChannel::with_defaults(transport)
                .max_concurrent_requests(self.config.max_in_flight_per_connection);
            let serve = self.serve.clone();
            let mut shutdown_rx = self.shutdown_rx.resubscribe();
            let done = done_tx.clone();
            tokio::task::spawn_local(async move {
                let requests = channel.execute(serve).for_each(|request| {
                    let in_flight = signer::InFlight::enter();
                    let done = done.clone();
                    // Boxed: the task then holds a pointer, not the request's whole state
                    // machine, which the runtime would otherwise copy in and out of it.
                    let request = Box::pin(request);
                    tokio::task::spawn_local(async move {
                        request.await;
                        drop(in_flight);
                        drop(done);
                    });
                    std::future::ready(())
                });
                tokio::select! {
                    () = requests => tracing::debug!(peer = %accepted.peer, "connection closed"),
                    _ = shutdown_rx.recv() => tracing::debug!(peer = %accepted.peer, "connection closed for shutdown"),
                }
                drop(accepted.permit);
                drop(done);
            });
        }
        drop(done_tx);
        let _ = done_rx.recv().await;
    }
}
