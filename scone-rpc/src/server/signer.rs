//! Group commit for signatures: SCONEs minted at the same moment share one signature.
//!
//! Like a database committing a group of transactions with one log flush: the first
//! request to arrive signs at once (so a lone, sequential caller never waits), and the
//! requests that arrive while it signs queue up and are signed together, with one ed25519
//! signature over the Merkle root of their digests, by the next round.

use std::sync::{Arc, Mutex, MutexGuard};

use scone::{Draft, MintError, Minter, Scone};
use tokio::sync::oneshot;

/// A draft waiting for its signature, and where to send the result.
type Pending = (Draft, oneshot::Sender<Result<Scone, MintError>>);

struct Queue {
    /// Drafts that arrived while a round was signing.
    pending: Vec<Pending>,
    /// Whether a round is running; exactly one signs at a time.
    signing: bool,
}

/// Signs SCONEs in groups.
pub(crate) struct GroupSigner {
    /// Mints and signs.
    minter: Minter,
    /// Most SCONEs under one signature: bounds a round's latency and each SCONE's path.
    max_group: usize,
    /// Drafts waiting for the next round.
    queue: Mutex<Queue>,
}

/// The signer went away before answering (its task panicked); the request fails cleanly.
#[derive(Debug, thiserror::Error)]
#[error("the signer stopped before signing")]
pub(crate) struct SignerGone;

impl GroupSigner {
    pub fn new(minter: Minter, max_group: usize) -> Arc<Self> {
        Arc::new(Self {
            minter,
            max_group: max_group.max(1),
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                signing: false,
            }),
        })
    }

    pub fn public_key(&self) -> scone::PublicKey {
        self.minter.public_key()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mints `draft`, signing it with whatever else is waiting.
    pub async fn mint(
        self: &Arc<Self>,
        draft: Draft,
    ) -> Result<Result<Scone, MintError>, SignerGone> {
        let (done_tx, done_rx) = oneshot::channel();
        let lead = {
            let mut queue = self.lock();
            queue.pending.push((draft, done_tx));
            !std::mem::replace(&mut queue.signing, true)
        };
        if lead {
            self.sign_round();
        }
        done_rx.await.map_err(|_| SignerGone)
    }

    /// Signs one group, then hands the next round to a new task so this caller can reply.
    fn sign_round(self: &Arc<Self>) {
        let group: Vec<Pending> = {
            let mut queue = self.lock();
            let take = queue.pending.len().min(self.max_group);
            queue.pending.drain(..take).collect()
        };
        let (drafts, senders): (Vec<Draft>, Vec<_>) = group.into_iter().unzip();
        match self.minter.mint_batch(&drafts) {
            Ok(scones) => {
                for (sender, scone) in senders.into_iter().zip(scones) {
                    let _ = sender.send(Ok(scone));
                }
            }
            // One bad draft (say, oversize) must fail alone: sign each on its own, which
            // is rare enough not to matter.
            Err(_) => {
                for (sender, draft) in senders.into_iter().zip(drafts) {
                    let _ = sender.send(self.minter.mint(draft));
                }
            }
        }
        let more = {
            let mut queue = self.lock();
            queue.signing = !queue.pending.is_empty();
            queue.signing
        };
        if more {
            let signer = Arc::clone(self);
            tokio::spawn(async move { signer.sign_round() });
        }
    }
}
