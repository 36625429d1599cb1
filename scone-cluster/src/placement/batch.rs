//! Batched replication (seed 003's "boxcarring"): an opt-in trade of durability for
//! throughput. With [`Batching`] set, a commit keeps the new version on this node and
//! replies at once; the copies wait in a batch that is sent every
//! [`every`](Batching::every), or as soon as [`max_updates`](Batching::max_updates)
//! are waiting, whichever comes first, one message per peer. Several versions of one
//! session waiting together go out as the newest only.
//!
//! **Failure window.** A change is on one node only from its reply until its batch is
//! acknowledged: up to `every` (plus a peer round trip), or `max_updates` changes. If
//! the node dies inside that window, those changes are lost: the client's next call
//! finds no node holding the version its token names and is refused
//! `session-unavailable` (never served an older state). A copy a peer does not take is
//! made again at once, as a commit would make it (other members if that one fails; a
//! peer that holds newer makes this node take its version). The client is not told, as
//! a synchronous commit would tell it, that the change was made from an old version
//! (`superseded`): with batching a change can be acknowledged and then lose to a newer
//! line. The default is synchronous replication: no window.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Notify;

use scone::Scone;
use scone_rpc::server::placement::{Committed, PlacementError};

use super::{ClusterPlacement, Inner, OtherLine, Shortfall};
use crate::lineage::{Ballot, Lineage, VersionId};
use crate::membership::{Member, Membership};
use crate::replica::SessionCopy;
use crate::session::SessionId;
use crate::stats::bump;
use crate::transport::PeerTransport;

/// When batched copies are sent: every `every`, or once `max_updates` wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// The longest a copy waits (the failure window's length).
    pub every: Duration,
    /// The most changes that wait before the batch goes at once.
    pub max_updates: usize,
}

impl Default for Batching {
    /// Seed 003's example scaled to RPC: 10 ms or 100 changes.
    fn default() -> Self {
        Self {
            every: Duration::from_millis(10),
            max_updates: 100,
        }
    }
}

/// The copies waiting to be sent.
#[derive(Debug, Default)]
pub(super) struct Batch {
    waiting: Mutex<Waiting>,
    /// Woken when `max_updates` are waiting.
    full: Notify,
}

#[derive(Debug, Default)]
struct Waiting {
    /// The newest copy of each session, and the peers it goes to.
    copies: HashMap<SessionId, (SessionCopy, Vec<Member>)>,
    /// Changes since the last send (versions of one session counted each).
    changes: usize,
}

impl Batch {
    /// Adds `copy` of `session` for `peers`; it replaces an older one of the session.
    pub(super) fn push(
        &self,
        session: SessionId,
        copy: SessionCopy,
        peers: Vec<Member>,
        max: usize,
    ) {
        let changes = {
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            waiting.copies.insert(session, (copy, peers));
            waiting.changes += 1;
            waiting.changes
        };
        if changes >= max {
            self.full.notify_one();
        }
    }

    fn take(&self) -> HashMap<SessionId, (SessionCopy, Vec<Member>)> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        waiting.changes = 0;
        std::mem::take(&mut waiting.copies)
    }
}

impl<T: PeerTransport, M: Membership> ClusterPlacement<T, M> {
    /// A commit when batching: the SCONE `made` (minted, its version, lineage, and the
    /// ballot of the request that made it) kept here, queued for the first
    /// `wanted` of `candidates`, and answered at once with a token naming them.
    pub(super) fn commit_batched(
        &self,
        made: (&Scone, VersionId, Lineage, Option<Ballot>),
        mut candidates: Vec<Member>,
        wanted: usize,
    ) -> Result<Committed, PlacementError> {
        let inner = &*self.inner;
        let (minted, minted_id, lineage, ballot) = made;
        let batching = inner.config.batching.unwrap_or_default();
        candidates.truncate(wanted);
        if candidates.len() < wanted && inner.config.shortfall == Shortfall::Refuse {
            bump(&inner.counters.not_replicated);
            return Err(PlacementError::NotReplicated {
                acknowledged: 0,
                required: wanted,
            });
        }
        inner.keep_minted((minted, minted_id), lineage.clone(), ballot)?;
        inner.batch_sender.get_or_init(|| {
            tokio::spawn(send_batches(Arc::downgrade(&self.inner), batching));
        });
        let copy = SessionCopy {
            scone: minted.encoded().to_vec(),
            lineage,
            ballot,
        };
        let secondaries = candidates.iter().map(|member| member.rpc).collect();
        inner.batch.push(
            SessionId::of(minted),
            copy,
            candidates,
            batching.max_updates,
        );
        Ok(inner.committed(minted, minted_id, secondaries, wanted))
    }
}

/// Sends the batch of the placement `inner` points to every `batching.every`, or when it
/// fills; ends once the placement is dropped.
pub(super) async fn send_batches<T: PeerTransport, M: Membership>(
    inner: Weak<Inner<T, M>>,
    batching: Batching,
) {
    // The first send after `every`, not at once: the commit that started this waits too.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + batching.every, batching.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(batch) = inner.upgrade().map(|inner| Arc::clone(&inner.batch)) else {
            return;
        };
        tokio::select! {
            _ = ticker.tick() => {}
            () = batch.full.notified() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        send(&inner, batch.take()).await;
    }
}

/// One message per peer with every copy it is to get.
async fn send<T: PeerTransport, M: Membership>(
    inner: &Inner<T, M>,
    copies: HashMap<SessionId, (SessionCopy, Vec<Member>)>,
) {
    if copies.is_empty() {
        return;
    }
    let mut by_peer: HashMap<SocketAddr, (Member, Vec<(SessionId, SessionCopy)>)> = HashMap::new();
    for (session, (copy, peers)) in copies {
        for peer in peers {
            by_peer
                .entry(peer.peer)
                .or_insert_with(|| (peer, Vec::new()))
                .1
                .push((session.clone(), copy.clone()));
        }
    }
    // Sent at once: the TCP transport puts what waits for one peer in one message.
    let sends = by_peer
        .into_values()
        .flat_map(|(member, copies)| copies.into_iter().map(move |copy| (member.clone(), copy)))
        .map(|(member, (session, copy))| async move {
            bump(&inner.counters.replications);
            inner.counters.copy_bytes.fetch_add(
                copy.scone.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            match inner.transport.replicate(member.peer, copy.clone()).await {
                Ok(()) => {
                    bump(&inner.counters.acks);
                    None
                }
                Err(error) => {
                    tracing::debug!(peer = %member.rpc, %error, "a batched copy was not taken");
                    Some((session, copy))
                }
            }
        });
    let failed: HashMap<SessionId, SessionCopy> =
        join_all(sends).await.into_iter().flatten().collect();
    // Each copy a peer did not take is made again at once, as a commit makes it: to
    // the members a commit would choose now, replacing those that fail; a peer holding
    // a newer version makes this node take it.
    let again = failed.into_iter().map(|(session, copy)| async move {
        let candidates = inner.candidates(&session, None);
        let wanted = inner.config.replicas.wanted(candidates.len());
        match inner
            .replicate(&copy, None, &candidates, wanted, OtherLine::Skip)
            .await
        {
            Ok(made) if made.len() >= wanted => {}
            Err(PlacementError::Superseded(_)) => {}
            _ => {
                bump(&inner.counters.batch_copies_lost);
                tracing::warn!(me = %inner.me.rpc, "a batched copy could not be made on enough members");
            }
        }
    });
    join_all(again).await;
}
