//! What one node holds: the newest verified SCONE of each session, never rolled back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use scone::{Clock, Scone, SystemClock};

use crate::session::SessionId;

/// What [`SessionStore::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Kept: the session was new here, or this is a newer version.
    Kept,
    /// Already held, byte for byte (a copy sent twice): nothing changed.
    Same,
    /// Not kept: this node holds a newer version, or another SCONE of the same version
    /// (two primaries forked the session; the first to arrive wins).
    Stale,
    /// Not kept: it has expired.
    Expired,
    /// Not kept: the store is at its bound of sessions.
    Full,
    /// Not kept: the session was ended.
    Ended,
}

/// How long an ended session is remembered when nothing of it was held (its own expiry
/// bounds it otherwise).
const ENDED_RETENTION_MS: u64 = 60 * 60 * 1000;

/// The sessions one node holds, newest version of each. Shared (`Clone` shares it).
///
/// Unlike a client's or relay's cache it never evicts: a session here may be the only
/// copy of a client's state. At its bound it refuses new sessions ([`Stored::Full`]);
/// expired ones are dropped when met or purged. An [ended](Self::end) session is
/// remembered until it would have expired, so that no copy can bring it back.
#[derive(Clone)]
pub struct SessionStore {
    sessions: Arc<Mutex<Sessions>>,
    max_sessions: usize,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Sessions {
    /// The newest SCONE of each live session.
    live: HashMap<SessionId, Scone>,
    /// Ended sessions, until when to remember them (ms since the epoch).
    ended: HashMap<SessionId, u64>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("sessions", &self.lock().live.len())
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

impl SessionStore {
    /// An empty store of at most `max_sessions`, on the system clock.
    pub fn new(max_sessions: usize) -> Self {
        Self {
            sessions: Arc::default(),
            max_sessions,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock (tests pass a manual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // Every update is one complete step: a panic elsewhere leaves consistent data.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `scone` (already verified) unless this node holds a version at least as
    /// new; see [`Stored`].
    pub fn put(&self, scone: Scone) -> Stored {
        let now_ms = self.clock.now_ms();
        if scone.is_expired_at(now_ms) {
            return Stored::Expired;
        }
        let id = SessionId::of(&scone);
        let scone = scone.compacted();
        let mut guard = self.lock();
        if guard.ended.contains_key(&id) {
            return Stored::Ended;
        }
        let sessions = &mut guard.live;
        let full = sessions.len() >= self.max_sessions;
        match sessions.get_mut(&id) {
            Some(held) if held.is_expired_at(now_ms) || held.version() < scone.version() => {
                *held = scone;
                Stored::Kept
            }
            Some(held)
                if held.version() == scone.version() && held.encoded() == scone.encoded() =>
            {
                Stored::Same
            }
            Some(_) => Stored::Stale,
            None if full => Stored::Full,
            None => {
                sessions.insert(id, scone);
                Stored::Kept
            }
        }
    }

    /// The session's newest SCONE, unless it has expired (then it is dropped).
    pub fn get(&self, id: &SessionId) -> Option<Scone> {
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock();
        match guard.live.get(id) {
            Some(held) if held.is_expired_at(now_ms) => {
                guard.live.remove(id);
                None
            }
            held => held.cloned(),
        }
    }

    /// Whether the session was ended (and is still remembered as such).
    pub fn is_ended(&self, id: &SessionId) -> bool {
        self.lock().ended.contains_key(id)
    }

    /// Ends the session: drops its SCONE and remembers, until it would have expired,
    /// that it ended, so that a copy arriving late cannot bring it back. Returns
    /// whether a SCONE was held.
    pub fn end(&self, id: &SessionId) -> bool {
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock();
        let held = guard.live.remove(id);
        let until = held
            .as_ref()
            .map_or(now_ms.saturating_add(ENDED_RETENTION_MS), |scone| {
                scone.expires_at_ms().max(now_ms)
            });
        guard.ended.insert(id.clone(), until);
        held.is_some()
    }

    /// The version held of the session, if any (expired or not).
    pub fn version(&self, id: &SessionId) -> Option<u64> {
        self.lock().live.get(id).map(Scone::version)
    }

    /// Drops every expired session, and forgets ended ones past their time; returns how
    /// many sessions were dropped.
    pub fn purge_expired(&self) -> usize {
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock();
        let before = guard.live.len();
        guard.live.retain(|_, scone| !scone.is_expired_at(now_ms));
        guard.ended.retain(|_, until| *until > now_ms);
        before - guard.live.len()
    }

    /// Every unexpired SCONE held, at this moment (for a hand-over before leaving).
    pub fn snapshot(&self) -> Vec<Scone> {
        let now_ms = self.clock.now_ms();
        self.lock()
            .live
            .values()
            .filter(|scone| !scone.is_expired_at(now_ms))
            .cloned()
            .collect()
    }

    /// How many sessions it holds (expired ones not yet met included).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scone::{Draft, EndpointId, ManualClock, Minter, MinterConfig, ServiceId, SigningKey};

    use super::*;

    #[test]
    fn versions_only_go_forward_and_expired_sessions_go_away() {
        let clock = ManualClock::new(1_800_000_000_000);
        let minter = Minter::new(SigningKey::from_seed(&[3; 32]))
            .with_config(MinterConfig {
                default_ttl: Duration::from_secs(60),
                ..MinterConfig::default()
            })
            .with_clock(clock.clone());
        let store = SessionStore::new(2).with_clock(clock.clone());
        let mint = |session: u8, version: u64| {
            let draft = Draft::new(
                ServiceId::new("cart").unwrap(),
                EndpointId::from_bytes([session; 16]),
            )
            .with_version(version);
            minter.mint(draft).unwrap()
        };
        assert_eq!(store.put(mint(1, 2)), Stored::Kept);
        assert_eq!(store.put(mint(1, 1)), Stored::Stale);
        assert_eq!(store.put(mint(1, 3)), Stored::Kept);
        assert_eq!(store.put(mint(2, 1)), Stored::Kept);
        assert_eq!(store.put(mint(3, 1)), Stored::Full, "never evicts");
        let id = SessionId::of(&mint(1, 3));
        assert_eq!(store.version(&id), Some(3));

        clock.advance(Duration::from_secs(61));
        assert_eq!(store.get(&id), None, "expired: dropped when met");
        assert_eq!(store.purge_expired(), 1, "the other one");
        assert!(store.is_empty());
        assert_eq!(store.put(mint(4, 1)), Stored::Kept, "room again");

        // Ended: gone, and no copy brings it back, not even a newer one.
        let four = SessionId::of(&mint(4, 1));
        assert!(store.end(&four));
        assert!(store.is_ended(&four));
        assert_eq!(store.get(&four), None);
        assert_eq!(store.put(mint(4, 2)), Stored::Ended);
        clock.advance(Duration::from_secs(61));
        store.purge_expired();
        assert!(
            !store.is_ended(&four),
            "forgotten once it would have expired"
        );
    }
}
