//! The answering side of peer links: a handler per connection (under
//! `scone_rpc::peer_link::serve_connections`) that answers its calls in order, inline
//! (the work is a replica's: decode, check, store).

use std::future::Future;
use std::io;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
use scone_rpc::peer_link::{self, LinkKeys, LinkSecret};
use tokio::net::{TcpListener, TcpStream};

use super::wire::{self, Answer, Ask, Call, Frame, Reply};
use super::HANDSHAKE_LABEL;
use crate::replica::Replica;

/// Most peer connections served at once: a peer opens up to
/// [`MAX_LANES`](super::MAX_LANES)` + 1` links, so this serves 60 peers at the most.
const MAX_PEER_CONNECTIONS: usize = 1024;

/// How long a connection without a cluster secret has to send its preamble.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an answer may wait for the peer to read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `replica` to peers on `listener` until `shutdown` completes; then closes the
/// peer connections and returns once their handlers have stopped. Peers need no secret:
/// see [`serve_peers_with_secret`].
pub async fn serve_peers(
    listener: TcpListener,
    replica: Replica,
    shutdown: impl Future,
) -> io::Result<()> {
    serve(listener, replica, None, shutdown).await
}

/// [`serve_peers`], answering only peers that prove they hold `secret` (within
/// `timeout`); a connection that does not is closed before any call is read.
pub async fn serve_peers_with_secret(
    listener: TcpListener,
    replica: Replica,
    secret: LinkSecret,
    timeout: Duration,
    shutdown: impl Future,
) -> io::Result<()> {
    serve(listener, replica, Some((secret, timeout)), shutdown).await
}

async fn serve(
    listener: TcpListener,
    replica: Replica,
    secret: Option<(LinkSecret, Duration)>,
    shutdown: impl Future,
) -> io::Result<()> {
    peer_link::serve_connections(listener, MAX_PEER_CONNECTIONS, shutdown, |stream, peer| {
        let _ = stream.set_nodelay(true);
        super::keep_alive(&stream);
        let (replica, secret) = (replica.clone(), secret.clone());
        async move {
            match serve_connection(stream, &replica, secret).await {
                Ok(()) => tracing::debug!(%peer, "peer connection closed"),
                Err(error) => tracing::warn!(%peer, %error, "peer connection failed"),
            }
        }
    })
    .await
}

/// Checks the preamble (and the secret, if any), then answers calls until the peer
/// closes the connection.
async fn serve_connection(
    mut stream: TcpStream,
    replica: &Replica,
    secret: Option<(LinkSecret, Duration)>,
) -> io::Result<()> {
    let timeout = secret
        .as_ref()
        .map_or(PREAMBLE_TIMEOUT, |(_, timeout)| *timeout);
    wire::read_preamble(&mut stream, timeout).await?;
    let keys = match &secret {
        Some((secret, timeout)) => Some(
            peer_link::accept(&mut stream, secret, HANDSHAKE_LABEL, *timeout)
                .await
                .map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!(
                            "the peer did not prove the cluster secret ({HANDSHAKE_LABEL}): {error}"
                        ),
                    )
                })?,
        ),
        None => None,
    };
    let (mut sealing, mut opening) = keys.map(LinkKeys::split).unzip();
    let mut frames = Transport::<_, Frame, Frame>::new(stream, DEFAULT_MAX_FRAME_BYTES);
    // A peer that vanishes without closing the connection is found by TCP keepalive
    // (`super::keep_alive`), which ends this read with an error.
    while let Some(frame) = frames.next().await {
        let mut frame = Some(frame);
        // Calls that came together are answered with one write.
        let mut failed = None;
        while let Some(next) = frame.take() {
            let call = match next.and_then(|frame| frame.open(opening.as_mut())) {
                Ok(call) => call,
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            };
            let answer = Frame::seal(&answer(replica, call), sealing.as_mut())?;
            bounded_write(frames.feed(answer)).await?;
            frame = frames.next().now_or_never().flatten();
        }
        // Answers to calls already carried out go out even if a later frame was bad.
        bounded_write(frames.flush()).await?;
        if let Some(error) = failed {
            return Err(error);
        }
    }
    Ok(())
}

/// `write`, or an error if the peer does not take it in time (it stopped reading).
async fn bounded_write(write: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))?
}

fn answer(replica: &Replica, Call { id, ask }: Call) -> Answer {
    let reply = match ask {
        Ask::Copies(copies) => Reply::Copies(
            copies
                .into_iter()
                .map(|copy| replica.accept_item(copy))
                .collect(),
        ),
        Ask::Fetch(session) => Reply::Fetch(replica.fetch(&session)),
        Ask::Delete(session) => Reply::Delete(replica.delete(&session)),
    };
    Answer { id, reply }
}
