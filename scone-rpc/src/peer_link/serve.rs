//! The accepting side of a link protocol, mini-redis style: a listener that takes a
//! permit before each accept (bounding connections), a task per connection, and a
//! shutdown that ends the connections and waits for their tasks.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};

/// How long the listener waits after a failed accept (out of file descriptors, say)
/// before the next, so that a lasting error does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` until `shutdown` completes, at most
/// `max_connections` at once (past it, the next accept waits for one to end), and runs
/// the future `handle` makes of each on a task of its own. Then drops every connection's
/// future (closing its stream) and returns once all of their tasks have ended.
///
/// `handle` does the link's whole job: the handshake ([`accept`](super::accept)), then
/// the protocol's calls. What it logs is its own; a failed accept is logged here.
///
/// # Errors
/// Only if the connection bound cannot be kept (its semaphore closed), which does not
/// happen; a failed accept is logged and the next one tried.
pub async fn serve_connections<H, F>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: impl Future,
    mut handle: H,
) -> io::Result<()>
where
    H: FnMut(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
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
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let connection = handle(stream, peer);
        let (mut stop, done) = (stop_tx.subscribe(), done_tx.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = connection => {}
                _ = stop.recv() => {}
            }
            drop((permit, done));
        });
    }
    // Every connection's task holds a `done` sender: the channel closes once all end.
    drop(stop_tx);
    drop(done_tx);
    let _ = done_rx.recv().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncReadExt;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    /// At most `max_connections` are served at once; at shutdown every connection is
    /// closed and the call returns once their handlers are gone.
    #[tokio::test]
    async fn connections_are_bounded_and_closed_at_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&started);
        let served = tokio::spawn(serve_connections(listener, 2, stopped, move |stream, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let _held = stream;
                std::future::pending::<()>().await;
            }
        }));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(address).await.unwrap());
        }
        tokio::time::timeout(LIMIT, async {
            while started.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "the third waits for a slot"
        );

        let _ = stop.send(());
        tokio::time::timeout(LIMIT, served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for client in &mut clients[..2] {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(LIMIT, client.read_to_end(&mut rest)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
        }
    }
}
