//! Peers over TCP: a small tarpc service (`scone-rpc`'s postcard framing) that a node
//! serves with [`serve_peers`], and [`TcpTransport`], which calls it.
//!
//! Copies and fetches carry SCONEs, which peers verify under the service's keys, so a
//! stranger can neither plant nor roll back state. With a cluster secret
//! ([`TcpTransport::with_secret`], [`serve_peers_with_secret`]) peers also prove, both
//! ways, that they hold it before any call (`scone_rpc::peer_link`, label
//! [`HANDSHAKE_LABEL`]), so a stranger can neither read nor end sessions either. Without
//! one, a stranger who guesses a session's 128-bit endpoint ID can read its SCONE: run
//! the peer port on the cluster's private network. The links are not encrypted.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
use scone_rpc::peer_link::{self, LinkSecret};
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use super::{PeerError, PeerTransport};
use crate::replica::{CopyItem, DeltaCopy, Replica, ReplicaRefusal, SessionCopy};
use crate::session::SessionId;

/// The calls between nodes.
#[tarpc::service]
pub(crate) trait Peer {
    /// Keeps each of `copies` that verifies and descends from what is held (a delta: if
    /// it holds the version it applies to); an answer for each, in order.
    async fn copies(copies: Vec<CopyItem>) -> Vec<Result<(), ReplicaRefusal>>;
    /// What this node holds of `session`, from its store only.
    async fn fetch(session: SessionId) -> Option<SessionCopy>;
    /// Drops `session`; whether it was held.
    async fn delete(session: SessionId) -> bool;
}

/// Answers peers from a node's [`Replica`].
#[derive(Clone)]
struct PeerServer(Replica);

impl Peer for PeerServer {
    async fn copies(
        self,
        _: tarpc::context::Context,
        copies: Vec<CopyItem>,
    ) -> Vec<Result<(), ReplicaRefusal>> {
        copies
            .into_iter()
            .map(|copy| self.0.accept_item(copy))
            .collect()
    }

    async fn fetch(self, _: tarpc::context::Context, session: SessionId) -> Option<SessionCopy> {
        self.0.fetch(&session)
    }

    async fn delete(self, _: tarpc::context::Context, session: SessionId) -> bool {
        self.0.delete(&session)
    }
}

/// Most peer connections served at once.
const MAX_PEER_CONNECTIONS: usize = 256;

/// What the cluster's link handshake is keyed for: a relay mesh's secret cannot open it,
/// nor a node that speaks another version of the peer protocol (v2: copies carry the
/// ballot of the request that made them).
pub const HANDSHAKE_LABEL: &str = "scone-cluster v2";

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
/// `timeout`); a connection that does not is closed before any request is read.
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
    let permits = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
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
                    tracing::warn!(%error, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (server, mut stop, done) = (
            PeerServer(replica.clone()),
            stop_tx.subscribe(),
            done_tx.clone(),
        );
        let secret = secret.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            if let Some((secret, timeout)) = &secret {
                let proved = tokio::select! {
                    proved = peer_link::accept(&mut stream, secret, HANDSHAKE_LABEL, *timeout) => proved,
                    _ = stop.recv() => return,
                };
                if let Err(error) = proved {
                    tracing::warn!(%peer, %error, label = HANDSHAKE_LABEL, "a peer connection did not prove the cluster secret (or speaks another version of the peer protocol)");
                    drop((permit, done));
                    return;
                }
            }
            let transport = Transport::new(stream, DEFAULT_MAX_FRAME_BYTES);
            let requests = BaseChannel::with_defaults(transport)
                .execute(server.serve())
                .for_each(|request| {
                    tokio::spawn(request);
                    std::future::ready(())
                });
            tokio::select! {
                () = requests => tracing::debug!(%peer, "peer connection closed"),
                _ = stop.recv() => {}
            }
            drop((permit, done));
        });
    }
    drop(stop_tx);
    drop(done_tx);
    let _ = done_rx.recv().await;
    Ok(())
}

/// Calls to peers over TCP: one connection per peer, opened on first use and again
/// after it fails; every connect and call bounded by a timeout. Cloning shares it.
///
/// Copies to one peer go out one message at a time: the copies that come while one is
/// on the wire wait and go together in the next (at most [`MAX_COPIES_PER_MESSAGE`]),
/// each still answered on its own. A lone copy goes at once; under load, a message and
/// its answer are shared by many commits instead of one round trip each. At most
/// [`MAX_COPIES_WAITING`] wait per peer; copies whose caller gave up are dropped unsent.
#[derive(Clone, Debug)]
pub struct TcpTransport {
    /// Each peer's link, behind its own lock: a connect to a dead peer holds up only
    /// calls to that peer.
    links: Arc<std::sync::Mutex<HashMap<SocketAddr, Link>>>,
    /// Copies waiting for each peer.
    outboxes: Arc<std::sync::Mutex<HashMap<SocketAddr, Outbox>>>,
    timeout: Duration,
    /// The cluster secret peers prove they hold, if the cluster has one.
    secret: Option<LinkSecret>,
}

/// One peer's link, if open; locked while connecting.
type Link = Arc<tokio::sync::Mutex<Option<PeerClient>>>;

/// Most copies in one message to a peer.
pub const MAX_COPIES_PER_MESSAGE: usize = 256;

/// Most SCONE bytes in one message to a peer (a frame holds 1 MiB).
const MAX_COPY_BYTES_PER_MESSAGE: usize = 512 * 1024;

/// Most copies waiting for one peer; past it, a copy fails at once (the peer is slow or
/// gone: the placement tries another) rather than growing the queue.
pub const MAX_COPIES_WAITING: usize = 4096;

/// The copies waiting for one peer, each with where its answer goes.
#[derive(Debug, Default)]
struct Outbox {
    waiting: Vec<(CopyItem, oneshot::Sender<Result<(), PeerError>>)>,
    /// Whether a task is sending this peer's messages.
    sending: bool,
}

impl TcpTransport {
    /// A transport whose connects and calls give up after `timeout` each.
    pub fn new(timeout: Duration) -> Self {
        Self {
            links: Arc::default(),
            outboxes: Arc::default(),
            timeout,
            secret: None,
        }
    }

    /// Proves `secret` to every peer, and makes every peer prove it, before any call.
    pub fn with_secret(mut self, secret: LinkSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    fn unreachable(peer: SocketAddr, reason: impl ToString) -> PeerError {
        PeerError::Unreachable {
            peer,
            reason: reason.to_string(),
        }
    }

    /// The lock of `peer`'s link.
    fn slot(&self, peer: SocketAddr) -> Link {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(links.entry(peer).or_default())
    }

    /// The open link to `peer`, or a new one.
    async fn link(&self, peer: SocketAddr) -> Result<PeerClient, PeerError> {
        let slot = self.slot(peer);
        let mut held = slot.lock().await;
        if let Some(link) = &*held {
            return Ok(link.clone());
        }
        let mut stream = tokio::time::timeout(self.timeout, TcpStream::connect(peer))
            .await
            .map_err(|_| Self::unreachable(peer, "connect timed out"))?
            .map_err(|error| Self::unreachable(peer, error))?;
        let _ = stream.set_nodelay(true);
        if let Some(secret) = &self.secret {
            peer_link::connect(&mut stream, secret, HANDSHAKE_LABEL, self.timeout)
                .await
                .map_err(|error| Self::unreachable(peer, error))?;
        }
        let transport = Transport::new(stream, DEFAULT_MAX_FRAME_BYTES);
        let link = PeerClient::new(tarpc::client::Config::default(), transport).spawn();
        *held = Some(link.clone());
        Ok(link)
    }

    fn context(&self) -> tarpc::context::Context {
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + self.timeout;
        ctx
    }

    /// The copies waiting, by peer (each change to them is one complete step).
    fn outboxes(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Outbox>> {
        self.outboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `copy` to `peer` with whatever else waits for it; its answer.
    async fn copy(&self, peer: SocketAddr, copy: CopyItem) -> Result<(), PeerError> {
        let (answer_tx, answer) = oneshot::channel();
        let start = {
            let mut outboxes = self.outboxes();
            let outbox = outboxes.entry(peer).or_default();
            if outbox.waiting.len() >= MAX_COPIES_WAITING {
                return Err(Self::unreachable(peer, "too many copies waiting for it"));
            }
            outbox.waiting.push((copy, answer_tx));
            !std::mem::replace(&mut outbox.sending, true)
        };
        if start {
            let transport = self.clone();
            tokio::spawn(async move { transport.send_waiting(peer).await });
        }
        // Behind the message on the wire (and, under load, a few more), each bounded by
        // the timeout for its connect, handshake and call; past this the copy counts as
        // failed, and may still arrive (as any call that timed out may).
        match tokio::time::timeout(self.timeout * 4, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Self::unreachable(peer, "the copy was dropped")),
            Err(_) => Err(Self::unreachable(peer, "no answer in time")),
        }
    }

    /// Sends `peer`'s waiting copies, a message at a time, until none wait.
    async fn send_waiting(&self, peer: SocketAddr) {
        loop {
            let batch = {
                let mut outboxes = self.outboxes();
                let outbox = outboxes.entry(peer).or_default();
                // Copies whose caller gave up (its request's deadline passed) are not sent.
                outbox.waiting.retain(|(_, answer)| !answer.is_closed());
                if outbox.waiting.is_empty() {
                    outbox.sending = false;
                    return;
                }
                let (mut count, mut bytes) = (0, 0);
                for (copy, _) in &outbox.waiting {
                    if count == MAX_COPIES_PER_MESSAGE
                        || (count > 0 && bytes + copy.payload_len() > MAX_COPY_BYTES_PER_MESSAGE)
                    {
                        break;
                    }
                    count += 1;
                    bytes += copy.payload_len();
                }
                outbox.waiting.drain(..count).collect::<Vec<_>>()
            };
            let (copies, answers): (Vec<CopyItem>, Vec<_>) = batch.into_iter().unzip();
            let count = copies.len();
            match self
                .call(
                    peer,
                    |link, ctx| async move { link.copies(ctx, copies).await },
                )
                .await
            {
                Ok(results) if results.len() == count => {
                    for (answer, result) in answers.into_iter().zip(results) {
                        let _ = answer
                            .send(result.map_err(|refusal| PeerError::Refused { peer, refusal }));
                    }
                }
                Ok(_) => {
                    for answer in answers {
                        let _ = answer.send(Err(Self::unreachable(peer, "answers missing")));
                    }
                }
                Err(error) => {
                    let reason = match error {
                        PeerError::Unreachable { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    for answer in answers {
                        let _ = answer.send(Err(Self::unreachable(peer, &reason)));
                    }
                }
            }
        }
    }

    /// Runs `call` on `peer`'s link; a link that fails is dropped, to be opened anew.
    async fn call<R, F, Fut>(&self, peer: SocketAddr, call: F) -> Result<R, PeerError>
    where
        F: FnOnce(PeerClient, tarpc::context::Context) -> Fut,
        Fut: Future<Output = Result<R, tarpc::client::RpcError>>,
    {
        let link = self.link(peer).await?;
        match call(link, self.context()).await {
            Ok(answer) => Ok(answer),
            Err(error) => {
                *self.slot(peer).lock().await = None;
                Err(Self::unreachable(peer, error))
            }
        }
    }
}

impl PeerTransport for TcpTransport {
    async fn replicate(&self, peer: SocketAddr, copy: SessionCopy) -> Result<(), PeerError> {
        self.copy(peer, CopyItem::Whole(copy)).await
    }

    async fn replicate_delta(&self, peer: SocketAddr, copy: DeltaCopy) -> Result<(), PeerError> {
        self.copy(peer, CopyItem::Delta(copy)).await
    }

    async fn fetch(
        &self,
        peer: SocketAddr,
        session: SessionId,
    ) -> Result<Option<SessionCopy>, PeerError> {
        self.call(
            peer,
            |link, ctx| async move { link.fetch(ctx, session).await },
        )
        .await
    }

    async fn delete(&self, peer: SocketAddr, session: SessionId) -> Result<bool, PeerError> {
        self.call(
            peer,
            |link, ctx| async move { link.delete(ctx, session).await },
        )
        .await
    }
}
