//! The accept loop: a permit before each accept, connections dealt out to worker threads,
//! and shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tarpc::server::Serve;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use super::worker::{Accepted, Security, Worker};
use super::ServerConfig;
use crate::envelope::{RequestEnvelope, ResponseEnvelope};

/// Serves `serve` on `listener`, each connection wrapped as `security` says, until
/// `shutdown` completes; then waits for the handlers still running to finish.
pub(super) async fn run<S>(
    listener: TcpListener,
    security: Security,
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
        let (finished_tx, finished_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let worker = Worker {
            serve: serve.clone(),
            config: config.clone(),
            security: security.clone(),
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
            let accepted = Accepted {
                stream,
                peer,
                permit,
            };
            if handoffs[next].send(accepted).await.is_err() {
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
