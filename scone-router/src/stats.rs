//! The relay's counters ([`StatsSnapshot`]), exposed on `/metrics` by
//! [`metrics`](crate::metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Defines a set of live counters and their plain snapshot, field by field, with one doc
/// each; that doc is also the counter's help text on `/metrics`.
macro_rules! counters {
    (
        $(#[$live_doc:meta])* $live:ident;
        $(#[$snap_doc:meta])* $snapshot:ident;
        $($(#[doc = $doc:literal])* $name:ident,)*
    ) => {
        $(#[$live_doc])*
        #[derive(Debug, Default)]
        pub(crate) struct $live {
            $($(#[doc = $doc])* pub(crate) $name: std::sync::atomic::AtomicU64,)*
        }

        $(#[$snap_doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $snapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl $live {
            /// The counters now.
            pub(crate) fn snapshot(&self) -> $snapshot {
                $snapshot {
                    $($name: self.$name.load(std::sync::atomic::Ordering::Relaxed),)*
                }
            }
        }

        impl $snapshot {
            /// Each counter as (name, help, value), in declaration order: what `/metrics`
            /// shows.
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
                [$((stringify!($name), concat!($($doc),*), self.$name),)*].into_iter()
            }
        }
    };
}
pub(crate) use counters;

counters! {
    /// The relay's counters, updated as it works (relaxed atomics: each is exact, but a
    /// snapshot is not one instant across all of them).
    Stats;
    /// The relay's counters at one moment, from [`Relay::stats`](crate::Relay::stats).
    ///
    /// Verification cost per stored SCONE is
    /// `signature_checks / (stores + stale_stores)`: below 1 when SCONEs minted
    /// together share a root.
    StatsSnapshot;
    /// Requests received.
    requests,
    /// Requests for a service with no route: refused (`wrong-service`).
    unrouted,
    /// Requests that carried no SCONE of the called service and got the relay's attached.
    hits,
    /// Requests that carried no SCONE of the called service while the relay held none.
    misses,
    /// Requests that carried their own SCONE of the called service, not older than the
    /// relay's (or of another session): sent on unchanged.
    carried,
    /// Requests that carried an older version of the session the relay holds: the newest
    /// was attached in its place.
    stale_replays,
    /// Requests that no upstream answered (unreachable, connection lost, deadline).
    upstream_failures,
    /// Verified SCONEs stored.
    stores,
    /// Verified SCONEs not stored because the relay held a newer version of the session.
    stale_stores,
    /// Verified SCONEs not stored because they were expired or larger than the store.
    unstorable,
    /// SCONEs in replies that did not decode or verify (forged, tampered with, signed by
    /// an untrusted key): dropped, never stored.
    forged_dropped,
    /// SCONEs in replies that belong to another service than the one called (a
    /// back-end's): passed on to the client, not held.
    passed_through,
    /// ed25519 signature checks done.
    signature_checks,
    /// SCONEs whose signature was settled by an already verified Merkle root.
    cached_roots,
    /// Held SCONEs dropped because the server refused them.
    refused_dropped,
    /// Requests that stopped waiting for the verification of their client's last reply
    /// (see `RelayConfig::pending_wait`).
    pending_timeouts,
}

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
