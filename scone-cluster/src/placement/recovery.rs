//! Copies restored without waiting for requests: after a member is lost, every node
//! copies the sessions it holds to k live members again ([`ClusterPlacement::keep_copies`]),
//! and before a node leaves it copies its own away ([`ClusterPlacement::hand_over`]).
//!
//! Each node pushes every session it holds to the first k candidates a commit would
//! choose (members of other zones first, then an order fixed per session). A candidate
//! that already holds the version answers at once, one that holds a newer one refuses
//! (and this node takes that version), one that holds another line is passed over for
//! the next, and one that lacks it keeps it: so after a pass, each session that a
//! surviving node held is on that node and k others, with no record of who held what to
//! keep in step.
//! A node that joins becomes a candidate like any other.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use scone_rpc::server::placement::PlacementError;

use super::{ClusterPlacement, HandOver, OtherLine};
use crate::membership::Membership;
use crate::replica::SessionCopy;
use crate::session::SessionId;
use crate::stats::bump;
use crate::transport::PeerTransport;

/// Sessions copied at once by a pass: enough to keep the links busy, few enough that
/// requests still get through.
const COPIES_IN_FLIGHT: usize = 64;

impl<T: PeerTransport, M: Membership> ClusterPlacement<T, M> {
    /// Copies every session this node holds to k other live members (as a commit would
    /// choose them), so that it can leave without taking a copy away: call it on a
    /// graceful stop, once it no longer serves clients. Returns how many sessions reached
    /// k copies, and how many fell short.
    pub async fn hand_over(&self) -> HandOver {
        self.copy_all().await
    }

    /// Copies every session this node holds to k other live members now: what
    /// [`keep_copies`](Self::keep_copies) does when a member is lost.
    pub async fn rereplicate(&self) -> HandOver {
        let inner = &*self.inner;
        let report = self.copy_all().await;
        bump(&inner.counters.recopy_passes);
        inner
            .counters
            .recopy_short
            .fetch_add(report.short as u64, std::sync::atomic::Ordering::Relaxed);
        report
    }

    /// Watches the membership every `every` and, whenever a member is gone (declared
    /// dead, or left), [re-replicates](Self::rereplicate) every session this node holds,
    /// so that sessions that lost a copy have k + 1 again without waiting for their next
    /// request. When a pass leaves sessions short (too few members), the next member to
    /// join sets off another. Runs until dropped.
    pub async fn keep_copies(&self, every: Duration) {
        let members = || -> BTreeSet<SocketAddr> {
            self.inner
                .membership
                .members()
                .into_iter()
                .map(|member| member.rpc)
                .collect()
        };
        let mut known = members();
        let mut short = false;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = members();
            let lost: Vec<SocketAddr> = known.difference(&now).copied().collect();
            let joined = now.difference(&known).next().is_some();
            known = now;
            if lost.is_empty() && !(joined && short) {
                continue;
            }
            let started = Instant::now();
            let report = self.rereplicate().await;
            short = report.short > 0;
            tracing::info!(
                me = %self.inner.me.rpc,
                ?lost,
                copied = report.handed_over,
                short = report.short,
                took_ms = started.elapsed().as_millis() as u64,
                "copied sessions again after a membership change"
            );
        }
    }

    /// Copies every session held to k candidates, [`COPIES_IN_FLIGHT`] sessions at once.
    async fn copy_all(&self) -> HandOver {
        let inner = &*self.inner;
        let copies = inner
            .replica
            .store()
            .snapshot()
            .into_iter()
            .map(|held| async move {
                let session = SessionId::of(held.scone());
                let candidates = inner.candidates(&session, None);
                let wanted = inner.config.replicas.wanted(candidates.len());
                match inner
                    .replicate(
                        &SessionCopy::of(&held),
                        None,
                        &candidates,
                        wanted,
                        OtherLine::Skip,
                    )
                    .await
                {
                    Ok(acknowledged) => acknowledged.len() >= wanted,
                    // A peer holds newer: nothing of this node's is needed there.
                    Err(PlacementError::Superseded(_)) => true,
                    Err(_) => false,
                }
            });
        let mut report = HandOver::default();
        let mut done = futures::stream::iter(copies).buffer_unordered(COPIES_IN_FLIGHT);
        while let Some(copied) = done.next().await {
            if copied {
                report.handed_over += 1;
            } else {
                report.short += 1;
            }
        }
        report
    }
}
