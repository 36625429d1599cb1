//! The upstream every mode reaches: one cart server (`examples::cart::serve`) in this
//! process.

use std::net::SocketAddr;

use examples::cart;
use scone::SigningKey;
use tokio::sync::oneshot;

use crate::LIMIT;

/// The cart server, its accept loop on a runtime of its own (the connections are served
/// on scone-rpc's worker threads).
pub struct Upstream {
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop_tx: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    pub fn start(key: &SigningKey) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cart-accept")
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("server address");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let key = key.clone();
        let task = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            cart::serve(listener, key, "upstream", stop_rx).await
        });
        Self {
            addr,
            runtime,
            stop_tx,
            task,
        }
    }

    pub fn stop(self) {
        let _ = self.stop_tx.send(());
        let task = self.task;
        let stopped = self
            .runtime
            .block_on(async { tokio::time::timeout(LIMIT, task).await });
        match stopped {
            Ok(Ok(Ok(()))) => {}
            other => eprintln!("warning: the cart server did not stop cleanly: {other:?}"),
        }
    }
}
