//! Group commit for signatures: SCONEs minted at the same moment share one signature.
//!
//! Like a database committing a group of transactions with one log flush. The first
//! request to need a signature becomes the leader; before signing it yields once to the
//! scheduler, so every request its worker already has ready (and any other worker's that
//! arrive meanwhile) runs up to its own signature and joins the group. Then one ed25519
//! signature over the Merkle root of their digests covers them all. While each turn of the
//! scheduler brings new members the leader keeps gathering (a few turns at most), so a
//! busy server signs once per group of many requests, while a lone, sequential caller pays
//! one trip through the scheduler and no timer.

use std::sync::{Arc, Mutex, MutexGuard};

use scone::{Draft, MintError, Minter, Scone};
use tokio::sync::oneshot;

/// Most scheduler turns a leader waits for its group to grow: bounds the added latency.
const MAX_GATHER_YIELDS: usize = 8;

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

/// Runs a signing round when dropped; held by the leader while it gathers its group.
struct SignOnDrop<'a>(&'a Arc<GroupSigner>);

impl Drop for SignOnDrop<'_> {
    fn drop(&mut self) {
        self.0.sign_round();
    }
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
            // The round runs when the guard drops: after gathering, or when this request's
            // future is dropped mid-gather (tarpc drops it on cancel, deadline or
            // disconnect). Otherwise a cancelled leader would leave `signing` set and
            // every later request waiting forever.
            let _round = SignOnDrop(self);
            // Keep yielding while each turn of the scheduler brings new members: a busy
            // server grows its group, an idle one signs after a single yield.
            let mut members = 1;
            for _ in 0..MAX_GATHER_YIELDS {
                tokio::task::yield_now().await;
                let now = self.lock().pending.len();
                if now == members || now >= self.max_group {
                    break;
                }
                members = now;
            }
        }
        done_rx.await.map_err(|_| SignerGone)
    }

    /// Signs everything waiting, in groups of at most `max_group`, and gives up the lead.
    fn sign_round(&self) {
        let waiting: Vec<Pending> = {
            let mut queue = self.lock();
            queue.signing = false;
            std::mem::take(&mut queue.pending)
        };
        let mut waiting = waiting.into_iter().peekable();
        while waiting.peek().is_some() {
            let group: Vec<Pending> = waiting.by_ref().take(self.max_group).collect();
            let (drafts, senders): (Vec<Draft>, Vec<_>) = group.into_iter().unzip();
            match self.minter.mint_batch(&drafts) {
                Ok(scones) => {
                    for (sender, scone) in senders.into_iter().zip(scones) {
                        let _ = sender.send(Ok(scone));
                    }
                }
                // One bad draft (say, oversize) must fail alone: sign each on its own,
                // which is rare enough not to matter.
                Err(_) => {
                    for (sender, draft) in senders.into_iter().zip(drafts) {
                        let _ = sender.send(self.minter.mint(draft));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;
    use scone::{Draft, EndpointId, ServiceId, SigningKey};

    use super::*;

    fn draft(n: u8) -> Draft {
        Draft::new(
            ServiceId::new("cart").unwrap(),
            EndpointId::from_bytes([n; 16]),
        )
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_stop_signing() {
        let signer = GroupSigner::new(Minter::new(SigningKey::from_seed(&[1; 32])), 64);
        // Poll the first request once: it becomes the leader and yields to gather a group.
        let mut leader = Box::pin(signer.mint(draft(1)));
        assert!(
            (&mut leader).now_or_never().is_none(),
            "the leader is gathering"
        );
        // tarpc drops a request's future on cancel, deadline or disconnect.
        drop(leader);
        let next = tokio::time::timeout(Duration::from_secs(5), signer.mint(draft(2)))
            .await
            .expect("signing goes on after a cancelled leader");
        assert_eq!(
            next.unwrap().unwrap().endpoint(),
            EndpointId::from_bytes([2; 16])
        );
    }

    #[tokio::test]
    async fn concurrent_mints_share_signatures_and_all_complete() {
        let signer = GroupSigner::new(Minter::new(SigningKey::from_seed(&[1; 32])), 64);
        let mints = (0..40u8).map(|n| {
            let signer = Arc::clone(&signer);
            async move { signer.mint(draft(n)).await }
        });
        let scones = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(mints))
            .await
            .expect("every mint completed");
        let scones: Vec<Scone> = scones.into_iter().map(|s| s.unwrap().unwrap()).collect();
        assert!(
            scones.iter().any(|s| s.batch_size_bound() > 1),
            "some shared a signature"
        );
    }
}
