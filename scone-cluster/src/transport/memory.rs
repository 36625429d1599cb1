//! An in-memory twin of the network between nodes, for deterministic fault tests: the
//! same [`Replica`] handling as over TCP, with links that can be cut, delayed or made
//! to lose messages, and acknowledgements that can be held back.
//!
//! Time is tokio's, so delays and timeouts run instantly under `start_paused` tests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{PeerError, PeerTransport};
use crate::replica::{DeltaCopy, Replica, ReplicaRefusal, SessionCopy};
use crate::session::SessionId;

/// The simulated network: which nodes are up, and what is wrong with their links.
/// Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<Network>>,
}

#[derive(Debug, Default)]
struct Network {
    /// Nodes that are up, by peer address.
    nodes: HashMap<SocketAddr, Replica>,
    /// Peers whose links are cut: calls to them fail.
    cut: HashSet<SocketAddr>,
    /// Messages to drop, per peer, before the next gets through.
    drop_next: HashMap<SocketAddr, usize>,
    /// Added to every call.
    delay: Duration,
    /// Peers whose acknowledgements wait for a permit.
    held: HashMap<SocketAddr, Arc<Semaphore>>,
}

/// Acknowledgements of one peer, held back until released; see
/// [`MemoryNetwork::hold_acks`].
#[derive(Clone, Debug)]
pub struct AckGate {
    permits: Arc<Semaphore>,
}

impl AckGate {
    /// Lets `count` held (or future) acknowledgements through.
    pub fn release(&self, count: usize) {
        self.permits.add_permits(count);
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Network> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings up a node at `peer`, answering with `replica`.
    pub fn join(&self, peer: SocketAddr, replica: Replica) {
        self.lock().nodes.insert(peer, replica);
    }

    /// Takes the node at `peer` down, as a crash: it answers nothing from now on.
    pub fn crash(&self, peer: SocketAddr) {
        self.lock().nodes.remove(&peer);
    }

    /// Cuts the links to `peer`: calls fail until [`heal`](Self::heal).
    pub fn cut(&self, peer: SocketAddr) {
        self.lock().cut.insert(peer);
    }

    /// Restores the links to `peer`.
    pub fn heal(&self, peer: SocketAddr) {
        self.lock().cut.remove(&peer);
    }

    /// Loses the next `count` messages to `peer`: the caller sees them time out.
    pub fn drop_next(&self, peer: SocketAddr, count: usize) {
        self.lock().drop_next.insert(peer, count);
    }

    /// Delays every call by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Holds `peer`'s acknowledgements of copies: it keeps each copy at once, but the
    /// sender hears back only as the gate releases them (or times out).
    pub fn hold_acks(&self, peer: SocketAddr) -> AckGate {
        let permits = Arc::new(Semaphore::new(0));
        self.lock().held.insert(peer, Arc::clone(&permits));
        AckGate { permits }
    }

    /// A transport over this network whose calls give up after `timeout`.
    pub fn transport(&self, timeout: Duration) -> MemoryTransport {
        MemoryTransport {
            network: self.clone(),
            timeout,
        }
    }

    /// The replica that answers for `peer`, after the link's faults: `None` for a lost
    /// message (the caller times out).
    async fn reach(&self, peer: SocketAddr) -> Result<Option<Replica>, String> {
        let (replica, delay, dropped) = {
            let mut network = self.lock();
            if network.cut.contains(&peer) {
                return Err("link cut".into());
            }
            let dropped = match network.drop_next.get_mut(&peer) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    true
                }
                _ => false,
            };
            (network.nodes.get(&peer).cloned(), network.delay, dropped)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match replica {
            None => Err("no node there".into()),
            Some(_) if dropped => Ok(None),
            Some(replica) => Ok(Some(replica)),
        }
    }
}

/// A node's calls over a [`MemoryNetwork`].
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    network: MemoryNetwork,
    timeout: Duration,
}

impl MemoryTransport {
    async fn call<T, F, Fut>(&self, peer: SocketAddr, call: F) -> Result<T, PeerError>
    where
        F: FnOnce(Replica) -> Fut,
        Fut: std::future::Future<Output = Result<T, PeerError>>,
    {
        let unreachable = |reason: String| PeerError::Unreachable { peer, reason };
        let attempt = async {
            match self.network.reach(peer).await.map_err(unreachable)? {
                Some(replica) => call(replica).await,
                // A lost message: nothing ever comes back.
                None => std::future::pending().await,
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(unreachable(format!("no answer within {:?}", self.timeout))))
    }
}

impl MemoryTransport {
    /// A copy to `peer`, kept by `keep`; the answer held back if `peer`'s
    /// acknowledgements are.
    async fn copy_to(
        &self,
        peer: SocketAddr,
        keep: impl FnOnce(&Replica) -> Result<(), ReplicaRefusal> + Send,
    ) -> Result<(), PeerError> {
        let held = self.network.lock().held.get(&peer).cloned();
        self.call(peer, move |replica: Replica| async move {
            let kept = keep(&replica).map_err(|refusal| PeerError::Refused { peer, refusal });
            if let Some(gate) = held {
                // Kept already; only the answer waits.
                let permit = gate.acquire().await.map_err(|_| PeerError::Unreachable {
                    peer,
                    reason: "gate closed".into(),
                })?;
                permit.forget();
            }
            kept
        })
        .await
    }
}

impl PeerTransport for MemoryTransport {
    async fn replicate(&self, peer: SocketAddr, copy: SessionCopy) -> Result<(), PeerError> {
        self.copy_to(peer, move |replica| replica.accept(copy))
            .await
    }

    async fn replicate_delta(&self, peer: SocketAddr, copy: DeltaCopy) -> Result<(), PeerError> {
        self.copy_to(peer, move |replica| replica.accept_delta(copy))
            .await
    }

    async fn fetch(
        &self,
        peer: SocketAddr,
        session: SessionId,
    ) -> Result<Option<SessionCopy>, PeerError> {
        self.call(peer, move |replica: Replica| async move {
            Ok(replica.fetch(&session))
        })
        .await
    }

    async fn delete(&self, peer: SocketAddr, session: SessionId) -> Result<bool, PeerError> {
        self.call(peer, move |replica: Replica| async move {
            Ok(replica.delete(&session))
        })
        .await
    }
}
