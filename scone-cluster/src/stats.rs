//! A node's counters: what it replicated, fetched and refused; and [`NodeMetrics`], the
//! same on a Prometheus `/metrics` endpoint (`scone_rpc::metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use scone_rpc::metrics::{Collect, Samples};

use crate::membership::Membership;
use crate::placement::ClusterPlacement;
use crate::transport::PeerTransport;

/// Defines the live counters and their snapshot, with one doc each (also the help text
/// wherever they are exported).
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// The counters, updated as the node works.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $($(#[doc = $doc])* pub(crate) $name: AtomicU64,)*
        }

        /// A node's counters at one moment ([`ClusterPlacement::stats`](crate::ClusterPlacement::stats)).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct ClusterStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> ClusterStats {
                ClusterStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl ClusterStats {
            /// Each counter as (name, help, value), in declaration order.
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
                [$((stringify!($name), concat!($($doc),*), self.$name),)*].into_iter()
            }
        }
    };
}

counters! {
    /// New versions committed: copied to enough peers (or replied degraded) and kept.
    commits,
    /// Copies sent to peers.
    replications,
    /// Copies peers acknowledged.
    acks,
    /// Copies sent as a delta (to a peer that held the version before) and taken.
    delta_copies,
    /// Deltas a peer could not apply (it did not hold the version before), sent whole.
    delta_fallbacks,
    /// SCONE bytes sent in copies: whole encodings, or claims, delta and signature.
    copy_bytes,
    /// Batched copies a peer did not acknowledge (batching only: they wait for the
    /// next re-replication).
    batch_copies_lost,
    /// Calls refused because fewer peers than required acknowledged (`not-replicated`).
    not_replicated,
    /// Calls refused because a newer version was held (`superseded`).
    superseded,
    /// Requests whose session this node held itself.
    local_loads,
    /// Requests whose session this node fetched from a peer and took over as primary
    /// (a failover, or a node new to the session).
    takeovers,
    /// Passes that copied every session held to k live members again, after a member was
    /// lost (or one joined while sessions were short of copies).
    recopy_passes,
    /// Sessions those passes left with fewer than k copies on other members.
    recopy_short,
    /// Requests whose session no node answering held (`session-unavailable`).
    unavailable,
    /// Sessions a handler ended here (dropped on every member that answered).
    ended,
    /// Requests refused because their session stayed locked past their deadline (`busy`).
    busy,
    /// Changes dropped at commit because their request's deadline had passed.
    too_late,
    /// Reads served from a version their client was not acknowledged (a later one),
    /// copied to k peers before the reply, as a commit would be.
    confirmed_reads,
    /// Copies from peers this node kept.
    copies_kept,
    /// Copies from peers this node refused (forged, stale, expired, or full).
    copies_refused,
    /// Copies from peers of the very version this node held already (known by digest,
    /// answered without a signature check): retries, and re-replication passes.
    copies_held_already,
    /// Ed25519 signatures this node checked on copies from peers. Copies minted in one
    /// group share a signature, checked once; copies checked by their issuer tag
    /// (`NodeConfig::issuer_key`) need none.
    signature_checks,
    /// Connections to peers opened: the first of each lane (a server worker's own link
    /// to a peer, or the one other callers share), and each after one failed.
    peer_links_opened,
    /// Connections to peers that failed: the peer closed it, stopped answering, or broke
    /// the protocol (a tampered message on a sealed link, say), or the runtime that read
    /// its answers stopped (each server worker's, at shutdown).
    peer_links_failed,
    /// Messages of copies sent to peers: `replications / copy_messages` is how many
    /// copies share a message (copies that wait while one is on the wire go together).
    copy_messages,
}

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A node's counters and gauges for `/metrics`: every [`ClusterStats`] counter, the
/// sessions held and the live members seen.
///
/// ```no_run
/// # async fn run(placement: scone_cluster::ClusterPlacement<scone_cluster::TcpTransport, scone_cluster::StaticMembership>) -> std::io::Result<()> {
/// let metrics = scone_rpc::metrics::Metrics::new("scone_cluster")
///     .with(scone_cluster::NodeMetrics::new(placement));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9500").await?;
/// metrics.serve(listener, tokio::signal::ctrl_c()).await
/// # }
/// ```
#[derive(Debug)]
pub struct NodeMetrics<T, M>(ClusterPlacement<T, M>);

impl<T: PeerTransport, M: Membership> NodeMetrics<T, M> {
    /// The metrics of the node whose placement this is.
    pub fn new(placement: ClusterPlacement<T, M>) -> Self {
        Self(placement)
    }
}

impl<T: PeerTransport, M: Membership> Collect for NodeMetrics<T, M> {
    fn collect(&self, samples: &mut Samples<'_>) {
        for (name, help, value) in self.0.stats().counters() {
            samples.counter(name, help, value);
        }
        let held = self.0.replica().store().len() as u64;
        samples.gauge("sessions", "Sessions this node holds.", held);
        let members = self.0.members().len() as u64;
        samples.gauge(
            "members",
            "Live members this node sees, itself included.",
            members,
        );
    }
}
