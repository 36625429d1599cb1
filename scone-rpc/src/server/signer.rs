//! Group commit for signatures: SCONEs minted at the same moment share one signature.
//!
//! Like a database committing a group of transactions with one log flush. The first
//! request to need a signature becomes the leader; before signing it yields once to the
//! scheduler, so every request its thread already has ready runs up to its own signature
//! and joins the group. Then one ed25519 signature over the Merkle root of their digests
//! covers them all. While each turn of the scheduler brings new members the leader keeps
//! gathering (a few turns at most), so a busy server signs once per group of many
//! requests. A lone, sequential caller never waits for a timer: on a thread of
//! [`server::run`](crate::server::run), which counts the requests each thread holds, it
//! signs at once; elsewhere it pays one trip through the scheduler.
//!
//! Each thread gathers its own groups. A group shared between threads would make one
//! thread's requests wait on the other's leader (idle cores on a busy server) and send
//! every result across threads (a wake-up system call each, and memory freed away from
//! the thread that allocated it).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use scone::{Draft, MintError, Minter, Scone};
use thread_local::ThreadLocal;
use tokio::sync::oneshot;

use crate::spare;

/// Most scheduler turns a leader waits for its group to grow: bounds the added latency.
const MAX_GATHER_YIELDS: usize = 8;

thread_local! {
    /// Requests spawned on this thread by [`server::run`](crate::server::run) and not yet
    /// finished; `None` on threads it does not run (the layer then cannot know).
    static REQUESTS_ON_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Counts one request as in flight on this thread while it lives; made where requests are
/// spawned, so that a leader can tell when every request its thread holds has joined its
/// group (then waiting longer cannot add anyone). Must be dropped on the thread that made
/// it, as on a single-threaded runtime.
pub(crate) struct InFlight(());

impl InFlight {
    pub fn enter() -> Self {
        REQUESTS_ON_THREAD.with(|count| count.set(Some(count.get().unwrap_or(0) + 1)));
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        REQUESTS_ON_THREAD.with(|count| count.set(count.get().map(|n| n.saturating_sub(1))));
    }
}

/// Whether the request asking is the only one in flight on this thread, so that no one
/// else could join its group.
fn alone_on_thread() -> bool {
    REQUESTS_ON_THREAD.with(|count| count.get().is_some_and(|in_flight| in_flight <= 1))
}

/// Where to send a draft's result.
type Reply = oneshot::Sender<Result<Scone, MintError>>;

/// One thread's drafts waiting for their round.
#[derive(Default)]
struct Queue {
    /// Drafts that arrived while a round was gathering.
    drafts: Vec<Draft>,
    /// Where each draft's SCONE goes, in the same order.
    replies: Vec<Reply>,
    /// Whether a leader is gathering; exactly one per queue at a time.
    gathering: bool,
}

/// How much group signing has saved: SCONEs minted against signatures made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigningStats {
    /// SCONEs minted.
    pub scones: u64,
    /// Ed25519 signatures made for them; `scones / signatures` is the mean group size.
    pub signatures: u64,
}

/// Signs SCONEs in groups.
pub(crate) struct GroupSigner {
    /// Mints and signs.
    minter: Minter,
    /// Most SCONEs under one signature: bounds a round's latency and each SCONE's path.
    max_group: usize,
    /// Drafts waiting for the next round, one queue per thread.
    queues: ThreadLocal<Mutex<Queue>>,
    /// SCONEs minted, for [`SigningStats`].
    scones: AtomicU64,
    /// Signatures made, for [`SigningStats`].
    signatures: AtomicU64,
}

/// Runs a signing round when dropped; held by the leader while it gathers its group.
struct SignOnDrop<'a> {
    signer: &'a GroupSigner,
    queue: &'a Mutex<Queue>,
}

impl Drop for SignOnDrop<'_> {
    fn drop(&mut self) {
        self.signer.sign_round(self.queue);
    }
}

/// The signer went away before answering (its task panicked); the request fails cleanly.
#[derive(Debug, thiserror::Error)]
#[error("the signer stopped before signing")]
pub(crate) struct SignerGone;

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupSigner {
    pub fn new(minter: Minter, max_group: usize) -> Arc<Self> {
        Arc::new(Self {
            minter,
            max_group: max_group.max(1),
            queues: ThreadLocal::new(),
            scones: AtomicU64::new(0),
            signatures: AtomicU64::new(0),
        })
    }

    pub fn public_key(&self) -> scone::PublicKey {
        self.minter.public_key()
    }

    pub fn stats(&self) -> SigningStats {
        SigningStats {
            scones: self.scones.load(Ordering::Relaxed),
            signatures: self.signatures.load(Ordering::Relaxed),
        }
    }

    /// Mints `draft`, signing it with whatever else is waiting on this thread.
    pub async fn mint(&self, draft: Draft) -> Result<Result<Scone, MintError>, SignerGone> {
        let (done_tx, done_rx) = oneshot::channel();
        // The queue of the thread the request runs on now. Should the task move to another
        // thread while waiting (on a work-stealing runtime), this queue's leader still
        // signs it: a queue is only ever signed by its own leader.
        let queue = self.queues.get_or_default();
        let lead = {
            let mut queue = lock(queue);
            queue.drafts.push(draft);
            queue.replies.push(done_tx);
            !std::mem::replace(&mut queue.gathering, true)
        };
        if lead {
            // The round runs when the guard drops: after gathering, or when this request's
            // future is dropped mid-gather (tarpc drops it on cancel, deadline or
            // disconnect). Otherwise a cancelled leader would leave `gathering` set and
            // every later request on this thread waiting forever.
            let _round = SignOnDrop {
                signer: self,
                queue,
            };
            // Keep yielding while each turn of the scheduler brings new members: a busy
            // server grows its group (a turn also reads the sockets, which may start more
            // requests). A request alone on its thread (a sequential caller) signs at once.
            if !alone_on_thread() {
                let mut members = 1;
                for _ in 0..MAX_GATHER_YIELDS {
                    tokio::task::yield_now().await;
                    let now = lock(queue).drafts.len();
                    if now == members || now >= self.max_group {
                        break;
                    }
                    members = now;
                }
            }
        }
        done_rx.await.map_err(|_| SignerGone)
    }

    /// Signs everything waiting in `queue`, in groups of at most `max_group`, and gives up
    /// the lead.
    fn sign_round(&self, queue: &Mutex<Queue>) {
        let (mut drafts, mut replies) = {
            let mut queue = lock(queue);
            queue.gathering = false;
            (
                std::mem::take(&mut queue.drafts),
                std::mem::take(&mut queue.replies),
            )
        };
        let mut replies_left = replies.drain(..);
        for group in drafts.chunks(self.max_group) {
            let replies = replies_left.by_ref().take(group.len());
            self.scones.fetch_add(group.len() as u64, Ordering::Relaxed);
            // A group of one (a lone caller) is signed alone: its leaf is the root, no tree
            // is needed. So is each draft of a group whose batch failed: one bad draft (say,
            // oversize) must fail alone, and that is rare enough not to matter.
            let batch = match group.len() {
                1 => None,
                _ => Some(self.minter.mint_batch(group)),
            };
            match batch {
                Some(Ok(scones)) => {
                    self.signatures.fetch_add(1, Ordering::Relaxed);
                    for (reply, scone) in replies.zip(scones) {
                        let _ = reply.send(Ok(scone));
                    }
                }
                None | Some(Err(_)) => {
                    self.signatures
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    for (reply, draft) in replies.zip(group) {
                        let _ = reply.send(self.minter.mint(draft));
                    }
                }
            }
        }
        drop(replies_left);
        // The drafts' state buffers go back to this thread's spares for the next states
        // saved. The emptied queue buffers go back for the next round (no one can have
        // refilled the queue meanwhile on this thread, since a round does not wait): a busy
        // thread then gathers without growing its buffers again and again.
        for draft in drafts.drain(..) {
            spare::give_back(draft.state);
        }
        let mut queue = lock(queue);
        if queue.drafts.capacity() == 0 && queue.replies.capacity() == 0 {
            queue.drafts = drafts;
            queue.replies = replies;
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
    async fn a_request_alone_on_its_thread_signs_without_yielding() {
        let signer = GroupSigner::new(Minter::new(SigningKey::from_seed(&[1; 32])), 64);
        // Not counted (not spawned by `server::run`): the leader yields to gather.
        assert!(signer.mint(draft(1)).now_or_never().is_none());
        // Counted, and the only one: nobody could join, so it signs in its first poll.
        let alone = InFlight::enter();
        let minted = signer.mint(draft(2)).now_or_never();
        assert!(matches!(minted, Some(Ok(Ok(_)))), "signed at once");
        // Another request in flight on this thread: the leader waits a turn for it.
        let other = InFlight::enter();
        assert!(signer.mint(draft(3)).now_or_never().is_none());
        drop((alone, other));
        assert_eq!(
            signer.stats().signatures,
            3,
            "every dropped leader still signed"
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
