//! Shared fixtures: servers on 127.0.0.1:0 that stop when told, and bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every await that could hang gets this long.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("operation finished within the test's time limit")
}

/// A server task listening on a loopback port, stopped by [`TestServer::stop`].
pub struct TestServer {
    pub addr: SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and runs `serve(listener, shutdown)` in a task.
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, stop_rx));
        Self {
            addr,
            stop_tx: Some(stop_tx),
            task,
        }
    }

    /// A server already running as `task` on `addr`, stopped through `stop_tx`.
    pub fn from_task(
        addr: SocketAddr,
        stop_tx: oneshot::Sender<()>,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        Self {
            addr,
            stop_tx: Some(stop_tx),
            task,
        }
    }

    /// Shuts the server down and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop_tx) = self.stop_tx.take() {
            let _ = stop_tx.send(());
        }
        bounded(&mut self.task)
            .await
            .expect("server task did not panic")
            .expect("server ran without error");
    }
}
