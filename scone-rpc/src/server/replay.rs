//! The replay guard: an opt-in watermark that refuses an older version of a client-held
//! session than one this service already issued.
//!
//! A client-held SCONE is a bearer token: without a guard, its holder can keep a copy,
//! spend, and hand the copy back, and the server (which keeps nothing) restores the old
//! state. It can also fork history: present version 1 twice and get two different
//! version 2s. With a guard the server keeps, per session, only the newest version it
//! issued and how long that stays relevant (a [`Watermark`], 16 bytes of value), and:
//!
//! - **admits** a request only if its SCONE is at least that version; an older one gets
//!   the typed refusal `Scone(Stale)`;
//! - **claims** each version before its SCONE leaves: a second request that raced from
//!   the same version loses with `Stale` instead of minting a rival branch.
//!
//! A watermark is kept until the newest SCONE of its session has expired (plus the clock
//! skew allowed), after which every older SCONE has expired too and is refused as such.
//!
//! [`Watermarks`] is the trait, so that several servers of one service can share one
//! store; [`MemoryWatermarks`] keeps them in this process's memory, which protects
//! sessions served by this process only and forgets them on restart (document your
//! deployment accordingly: one process, or a store shared by all of them).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use scone::clock::Clock;
use scone::{EndpointId, ObjectId, Scone, ServiceId};

/// The session a watermark belongs to: what a SCONE's successors keep unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The service the state belongs to.
    pub service: ServiceId,
    /// The client session.
    pub endpoint: EndpointId,
    /// The server object within the session.
    pub object: ObjectId,
}

impl SessionKey {
    /// The session `scone` belongs to.
    pub fn of(scone: &Scone) -> Self {
        Self {
            service: scone.service().clone(),
            endpoint: scone.endpoint(),
            object: scone.object(),
        }
    }
}

/// What a guard keeps per session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    /// The newest version issued.
    pub version: u64,
    /// Until when it matters (milliseconds since the epoch): the newest SCONE's expiry
    /// plus the clock skew verifiers allow. After it, the entry may be forgotten.
    pub keep_until_ms: u64,
}

/// A SCONE older than the newest version issued for its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version {presented} of this session is stale: version {newest} was already issued")]
pub struct Stale {
    /// The version presented (or about to be minted).
    pub presented: u64,
    /// The newest version issued.
    pub newest: u64,
}

/// Where a service keeps its sessions' watermarks.
///
/// Both calls run on the request path, so an implementation answers from memory it keeps
/// (a store shared between servers keeps its copy in step by its own means). Both must be
/// atomic per session: two servers claiming the same version must not both succeed.
pub trait Watermarks: Debug + Send + Sync + 'static {
    /// Whether a request may present `version` of `session`.
    fn admit(&self, session: &SessionKey, version: u64) -> Result<(), Stale>;

    /// Records that `mark.version` of `session` is being issued, unless that version or a
    /// newer one already was (then nothing changes and the SCONE must not be sent).
    fn claim(&self, session: &SessionKey, mark: Watermark) -> Result<(), Stale>;
}

/// Settings of [`MemoryWatermarks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryWatermarksConfig {
    /// Most sessions remembered. When full of unexpired sessions, the ones closest to
    /// expiry are forgotten first (and logged), which reopens replay for them alone.
    pub max_sessions: usize,
}

impl Default for MemoryWatermarksConfig {
    fn default() -> Self {
        Self {
            // About 100 MB at most (see the crate docs for the per-session cost).
            max_sessions: 1_000_000,
        }
    }
}

/// Shards: requests on different sessions rarely wait for one another's lock.
const SHARDS: usize = 16;

/// Watermarks in this process's memory, bounded, forgotten once expired.
#[derive(Debug)]
pub struct MemoryWatermarks {
    /// Sessions spread by endpoint, each shard under its own lock.
    shards: Box<[Mutex<Shard>]>,
    /// Most sessions per shard.
    max_per_shard: usize,
    /// Decides when a watermark has expired.
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Shard {
    marks: HashMap<SessionKey, Watermark>,
    /// Size at which the next sweep of expired entries runs: sweeping when the map has
    /// doubled since the last one keeps the cost per insert constant.
    sweep_at: usize,
}

impl Default for MemoryWatermarks {
    fn default() -> Self {
        Self::new(MemoryWatermarksConfig::default())
    }
}

impl MemoryWatermarks {
    /// An empty store with the system clock.
    pub fn new(config: MemoryWatermarksConfig) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_per_shard: config.max_sessions.div_ceil(SHARDS).max(1),
            clock: Arc::new(scone::SystemClock),
        }
    }

    /// Replaces the clock (tests move time with a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many sessions it remembers, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).marks.len())
            .sum()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The watermark of `session`, if one is kept and unexpired.
    pub fn get(&self, session: &SessionKey) -> Option<Watermark> {
        let now_ms = self.clock.now_ms();
        lock(self.shard(session))
            .marks
            .get(session)
            .filter(|mark| mark.keep_until_ms >= now_ms)
            .copied()
    }

    fn shard(&self, session: &SessionKey) -> &Mutex<Shard> {
        // The endpoint is 16 random bytes: any byte of it spreads sessions evenly.
        &self.shards[usize::from(session.endpoint.as_bytes()[0]) % SHARDS]
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Every update is one complete map operation: data behind a poisoned lock is sound.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shard {
    /// Makes room for one more entry: drops expired ones, then if still full the ones
    /// closest to expiry (an eighth of the shard, so this runs rarely).
    fn make_room(&mut self, now_ms: u64, max: usize) {
        if self.marks.len() < self.sweep_at.max(1024).min(max) {
            return;
        }
        self.marks.retain(|_, mark| mark.keep_until_ms >= now_ms);
        if self.marks.len() >= max {
            let mut ends: Vec<u64> = self.marks.values().map(|m| m.keep_until_ms).collect();
            let cut = (max / 8).max(1).min(ends.len() - 1);
            let (_, threshold, _) = ends.select_nth_unstable(cut);
            let threshold = *threshold;
            let before = self.marks.len();
            self.marks.retain(|_, mark| mark.keep_until_ms > threshold);
            tracing::warn!(
                forgotten = before - self.marks.len(),
                "replay guard full: forgot the unexpired sessions closest to expiry"
            );
        }
        self.sweep_at = self.marks.len() * 2;
    }
}

impl Watermarks for MemoryWatermarks {
    fn admit(&self, session: &SessionKey, version: u64) -> Result<(), Stale> {
        match self.get(session) {
            Some(mark) if version < mark.version => Err(Stale {
                presented: version,
                newest: mark.version,
            }),
            _ => Ok(()),
        }
    }

    fn claim(&self, session: &SessionKey, mark: Watermark) -> Result<(), Stale> {
        let now_ms = self.clock.now_ms();
        let mut shard = lock(self.shard(session));
        match shard.marks.get_mut(session) {
            Some(kept) if kept.keep_until_ms >= now_ms && kept.version >= mark.version => {
                Err(Stale {
                    presented: mark.version,
                    newest: kept.version,
                })
            }
            Some(kept) => {
                *kept = mark;
                Ok(())
            }
            None => {
                shard.make_room(now_ms, self.max_per_shard);
                shard.marks.insert(session.clone(), mark);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use scone::ManualClock;

    use super::*;

    fn session(byte: u8) -> SessionKey {
        SessionKey {
            service: ServiceId::new("wallet").unwrap(),
            endpoint: EndpointId::from_bytes([byte; 16]),
            object: ObjectId(0),
        }
    }

    fn mark(version: u64, keep_until_ms: u64) -> Watermark {
        Watermark {
            version,
            keep_until_ms,
        }
    }

    #[test]
    fn older_versions_are_refused_and_equal_or_newer_admitted() {
        let clock = ManualClock::new(1_000);
        let guard = MemoryWatermarks::default().with_clock(clock);
        let s = session(1);
        assert_eq!(guard.admit(&s, 1), Ok(()), "an unknown session is admitted");
        guard.claim(&s, mark(2, 5_000)).unwrap();
        assert_eq!(
            guard.admit(&s, 1),
            Err(Stale {
                presented: 1,
                newest: 2
            })
        );
        assert_eq!(guard.admit(&s, 2), Ok(()));
        assert_eq!(guard.admit(&s, 3), Ok(()));
        assert_eq!(guard.admit(&session(2), 1), Ok(()), "sessions are apart");
    }

    #[test]
    fn a_version_is_claimed_once_so_history_cannot_fork() {
        let guard = MemoryWatermarks::default().with_clock(ManualClock::new(1_000));
        let s = session(1);
        guard.claim(&s, mark(2, 5_000)).unwrap();
        assert!(
            guard.claim(&s, mark(2, 6_000)).is_err(),
            "a rival version 2"
        );
        assert!(guard.claim(&s, mark(1, 6_000)).is_err());
        guard.claim(&s, mark(3, 6_000)).unwrap();
        assert_eq!(guard.get(&s), Some(mark(3, 6_000)));
    }

    #[test]
    fn watermarks_are_forgotten_once_expired() {
        let clock = ManualClock::new(1_000);
        let guard = MemoryWatermarks::default().with_clock(clock.clone());
        let s = session(1);
        guard.claim(&s, mark(5, 2_000)).unwrap();
        clock.set(2_001);
        assert_eq!(guard.admit(&s, 1), Ok(()));
        assert_eq!(guard.get(&s), None);
        guard.claim(&s, mark(1, 9_000)).unwrap();
    }

    #[test]
    fn the_store_stays_within_its_bound() {
        let clock = ManualClock::new(0);
        let guard = MemoryWatermarks::new(MemoryWatermarksConfig {
            max_sessions: 2 * SHARDS * 1024,
        })
        .with_clock(clock);
        for i in 0..(8 * SHARDS * 1024) as u64 {
            let mut endpoint = [0u8; 16];
            endpoint[..8].copy_from_slice(&i.to_le_bytes());
            let s = SessionKey {
                endpoint: EndpointId::from_bytes(endpoint),
                ..session(0)
            };
            guard.claim(&s, mark(1, 10_000 + i)).unwrap();
        }
        assert!(guard.len() <= 2 * SHARDS * 1024, "{} kept", guard.len());
    }
}
