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
}

/// The sessions one node holds, newest version of each. Shared (`Clone` shares it).
///
/// Unlike a client's or relay's cache it never evicts: a session here may be the only
/// copy of a client's state. At its bound it refuses new sessions ([`Stored::Full`]);
/// expired ones are dropped when met or purged.
#[derive(Clone)]
pub struct SessionStore {
    sessions: Arc<Mutex<HashMap<SessionId, Scone>>>,
    max_sessions: usize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("sessions", &self.lock().len())
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

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Scone>> {
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
        let mut sessions = self.lock();
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
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(held) if held.is_expired_at(now_ms) => {
                sessions.remove(id);
                None
            }
            held => held.cloned(),
        }
    }

    /// The version held of the session, if any (expired or not).
    pub fn version(&self, id: &SessionId) -> Option<u64> {
        self.lock().get(id).map(Scone::version)
    }

    /// Drops the session; returns whether it was held.
    pub fn remove(&self, id: &SessionId) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Drops every expired session; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now_ms = self.clock.now_ms();
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, scone| !scone.is_expired_at(now_ms));
        before - sessions.len()
    }

    /// Every unexpired SCONE held, at this moment (for a hand-over before leaving).
    pub fn snapshot(&self) -> Vec<Scone> {
        let now_ms = self.clock.now_ms();
        self.lock()
            .values()
            .filter(|scone| !scone.is_expired_at(now_ms))
            .cloned()
            .collect()
    }

    /// How many sessions it holds (expired ones not yet met included).
    pub fn len(&self) -> usize {
        self.lock().len()
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
    }
}
