//! A node's counters: what it replicated, fetched and refused.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Calls refused because fewer peers than required acknowledged (`not-replicated`).
    not_replicated,
    /// Calls refused because a newer version was held (`scone-stale`).
    superseded,
    /// Requests whose session this node held itself.
    local_loads,
    /// Requests whose session this node fetched from a peer and took over as primary
    /// (a failover, or a node new to the session).
    takeovers,
    /// Requests whose session no node answering held (`session-unavailable`).
    unavailable,
    /// Copies from peers this node kept.
    copies_kept,
    /// Copies from peers this node refused (forged, stale, expired, or full).
    copies_refused,
}

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
