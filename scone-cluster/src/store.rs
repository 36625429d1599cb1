//! What one node holds: the newest verified SCONE of each session with its lineage,
//! never rolled back and never replaced by another line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use scone::{Clock, Scone, SystemClock};

use crate::lineage::{descends_from, descent, Ballot, Descent, Lineage, VersionId};
use crate::session::SessionId;

/// What [`SessionStore::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Kept: the session was new here, or this is a newer version of its line (or of a
    /// line that replaces one no acknowledged version descends from: see
    /// [`SessionStore::put`]).
    Kept,
    /// Already held, byte for byte (a copy sent twice): nothing changed.
    Same,
    /// Not kept: this node holds a newer version.
    Stale,
    /// Not kept: this node holds a version of another line (two primaries forked the
    /// session, and the line held here may be the acknowledged one).
    Forked,
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

/// One session as a node holds it: its newest SCONE here and the versions that SCONE
/// descends from.
#[derive(Clone, Debug)]
pub struct Held {
    scone: Scone,
    lineage: Lineage,
    /// Which version it is, hashed once.
    id: VersionId,
    /// The request that made it (or that vouched for it when it was kept), if known.
    ballot: Option<Ballot>,
}

impl Held {
    /// `scone`, descended from `lineage`.
    pub fn new(scone: Scone, lineage: Lineage) -> Self {
        let id = VersionId::of(&scone);
        Self {
            scone,
            lineage,
            id,
            ballot: None,
        }
    }

    /// `scone`, version `id` (its digest, already taken), descended from `lineage`.
    pub(crate) fn with_id(scone: Scone, id: VersionId, lineage: Lineage) -> Self {
        debug_assert_eq!(id, VersionId::of(&scone));
        Self {
            scone,
            lineage,
            id,
            ballot: None,
        }
    }

    /// The same, made by the request of `ballot`.
    pub fn with_ballot(mut self, ballot: Option<Ballot>) -> Self {
        self.ballot = ballot;
        self
    }

    /// The request that made it, if known.
    pub fn ballot(&self) -> Option<Ballot> {
        self.ballot
    }

    /// The SCONE.
    pub fn scone(&self) -> &Scone {
        &self.scone
    }

    /// The versions it descends from.
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The SCONE and its lineage.
    pub fn into_parts(self) -> (Scone, Lineage) {
        (self.scone, self.lineage)
    }

    /// Which version it is.
    pub fn id(&self) -> VersionId {
        self.id
    }

    /// Whether it is `base` or descends from it (as far as its lineage tells).
    pub fn descends_from(&self, base: VersionId) -> bool {
        descends_from(self.id(), &self.lineage, base)
    }
}

/// Whether `held` may be replaced by version `id` with `lineage`: see
/// [`SessionStore::put`].
fn admits(held: &Held, id: VersionId, lineage: &Lineage, ballot: Option<Ballot>) -> Stored {
    let stored = match descent(id, lineage, held.id()) {
        Descent::Same => return Stored::Same,
        Descent::Newer => return Stored::Kept,
        Descent::Older => Stored::Stale,
        Descent::Forked => Stored::Forked,
    };
    // Another line (or an ancestor, which never replaces what descends from it). The
    // version the request's client was acknowledged on decides: a held line that does
    // not continue it is an attempt the client gave up on. When both continue it, the one
    // its client's later request made wins (see `Ballot`), then the higher (version,
    // digest), the same way on every node, so that nodes settle on one line whatever
    // order copies come in. A held version whose request is not known is ordered by
    // (version, digest) alone.
    let later = |ballot: Ballot| match held.ballot {
        Some(made) if made.rank() != ballot.rank() => ballot.rank() > made.rank(),
        _ => (id.version, id.digest) > (held.id.version, held.id.digest),
    };
    let replaces = ballot.is_some_and(|ballot| {
        let base = ballot.acknowledged;
        descends_from(id, lineage, base)
            && !held.descends_from(id)
            && (!held.descends_from(base) || later(ballot))
    });
    if replaces {
        Stored::Kept
    } else {
        stored
    }
}

#[derive(Default)]
struct Sessions {
    /// The newest SCONE of each live session. Boxed: a hash table keeps a share of its
    /// slots empty (up to half, right after it grows), and an empty slot costs the size
    /// of its value; a pointer there instead of a `Held` saved about 300 B per session
    /// at a million (`cargo bench -p scone-cluster --bench vs_redis`, scale part).
    live: HashMap<SessionId, Box<Held>>,
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

    /// Keeps `scone` (already verified), whose ancestors are `lineage`, if it descends
    /// from what this node holds ([`Stored`] says why not).
    ///
    /// `ballot` is the request that made `scone` (or vouches for it), when known: the
    /// version its client was acknowledged on, and its attempt. A copy that descends from
    /// that version also replaces a held version of another line: one that does not
    /// descend from it (a fork left by an attempt the client gave up on), or one that
    /// does but was made by an earlier request of the client (a lower [`Ballot`]), or by
    /// the same and is lower in (version, digest) order. So every node settles on the
    /// same line whatever order copies come in, and a late copy of an attempt the client
    /// gave up on (a node paused with the request in its socket, that ran it on waking)
    /// never replaces the version the client's retry was acknowledged on.
    ///
    /// With several clients writing one session through failovers, two clients' ballots
    /// do not order their requests in time, and one of two lines can hold another
    /// client's change.
    pub fn put(&self, scone: Scone, lineage: Lineage, ballot: Option<Ballot>) -> Stored {
        self.put_held(Held::new(scone, lineage).with_ballot(ballot))
    }

    /// [`put`](Self::put), for a SCONE already made a [`Held`] (its digest taken).
    pub fn put_held(&self, new: Held) -> Stored {
        let now_ms = self.clock.now_ms();
        if new.scone.is_expired_at(now_ms) {
            return Stored::Expired;
        }
        let ballot = new.ballot;
        let id = SessionId::of(&new.scone);
        // Compacting copies the bytes out of the message they came in: the same bytes, the
        // same digest.
        let new = Held {
            scone: new.scone.compacted(),
            ..new
        };
        let mut guard = self.lock();
        if guard.ended.contains_key(&id) {
            return Stored::Ended;
        }
        let sessions = &mut guard.live;
        let full = sessions.len() >= self.max_sessions;
        let Some(held) = sessions.get_mut(&id) else {
            if full {
                return Stored::Full;
            }
            sessions.insert(id, Box::new(new));
            return Stored::Kept;
        };
        let stored = if held.scone.is_expired_at(now_ms) {
            Stored::Kept
        } else {
            admits(held, new.id(), &new.lineage, ballot)
        };
        if stored == Stored::Kept {
            **held = new;
        }
        stored
    }

    /// What [`put`](Self::put) would do with version `id` of `session` (bounds and
    /// expiry aside): whether a SCONE minted from a loaded version may still be kept.
    pub fn admits(
        &self,
        session: &SessionId,
        id: VersionId,
        lineage: &Lineage,
        ballot: Option<Ballot>,
    ) -> Stored {
        match self.lock().live.get(session) {
            Some(held) => admits(held, id, lineage, ballot),
            None => Stored::Kept,
        }
    }

    /// The session's newest SCONE and its lineage, unless it has expired (then it is
    /// dropped).
    pub fn get(&self, id: &SessionId) -> Option<Held> {
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock();
        match guard.live.get(id) {
            Some(held) if held.scone.is_expired_at(now_ms) => {
                guard.live.remove(id);
                None
            }
            held => held.map(|held| Held::clone(held)),
        }
    }

    /// The session's newest SCONE, unless it has expired.
    pub fn get_scone(&self, id: &SessionId) -> Option<Scone> {
        self.get(id).map(|held| held.scone)
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
            .map_or(now_ms.saturating_add(ENDED_RETENTION_MS), |held| {
                held.scone.expires_at_ms().max(now_ms)
            });
        guard.ended.insert(id.clone(), until);
        held.is_some()
    }

    /// Whether it holds version `version` of the session, unexpired.
    pub fn holds(&self, session: &SessionId, version: VersionId) -> bool {
        let now_ms = self.clock.now_ms();
        self.lock()
            .live
            .get(session)
            .is_some_and(|held| held.id == version && !held.scone.is_expired_at(now_ms))
    }

    /// The version held of the session, if any (expired or not).
    pub fn version(&self, id: &SessionId) -> Option<u64> {
        self.lock().live.get(id).map(|held| held.scone.version())
    }

    /// Drops every expired session, and forgets ended ones past their time; returns how
    /// many sessions were dropped.
    pub fn purge_expired(&self) -> usize {
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock();
        let before = guard.live.len();
        guard
            .live
            .retain(|_, held| !held.scone.is_expired_at(now_ms));
        guard.ended.retain(|_, until| *until > now_ms);
        before - guard.live.len()
    }

    /// Every unexpired session held, at this moment (for a hand-over before leaving,
    /// or re-replication).
    pub fn snapshot(&self) -> Vec<Held> {
        let now_ms = self.clock.now_ms();
        self.lock()
            .live
            .values()
            .filter(|held| !held.scone.is_expired_at(now_ms))
            .map(|held| Held::clone(held))
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
        let put = |scone| store.put(scone, Lineage::default(), None);
        assert_eq!(put(mint(1, 2)), Stored::Kept);
        assert_eq!(put(mint(1, 1)), Stored::Stale);
        assert_eq!(put(mint(1, 3)), Stored::Kept);
        assert_eq!(put(mint(2, 1)), Stored::Kept);
        assert_eq!(put(mint(3, 1)), Stored::Full, "never evicts");
        let id = SessionId::of(&mint(1, 3));
        assert_eq!(store.version(&id), Some(3));

        clock.advance(Duration::from_secs(61));
        assert!(store.get(&id).is_none(), "expired: dropped when met");
        assert_eq!(store.purge_expired(), 1, "the other one");
        assert!(store.is_empty());
        assert_eq!(put(mint(4, 1)), Stored::Kept, "room again");

        // Ended: gone, and no copy brings it back, not even a newer one.
        let four = SessionId::of(&mint(4, 1));
        assert!(store.end(&four));
        assert!(store.is_ended(&four));
        assert!(store.get(&four).is_none());
        assert_eq!(put(mint(4, 2)), Stored::Ended);
        clock.advance(Duration::from_secs(61));
        store.purge_expired();
        assert!(
            !store.is_ended(&four),
            "forgotten once it would have expired"
        );
    }
}

#[cfg(test)]
mod lineage_tests {
    use std::time::Duration;

    use scone::{Draft, EndpointId, Minter, MinterConfig, ServiceId, SigningKey};

    use super::*;

    /// A minter of SCONEs of one session, each version with the state `line`.
    fn mint(version: u64, line: &[u8]) -> Scone {
        let minter = Minter::new(SigningKey::from_seed(&[3; 32])).with_config(MinterConfig {
            default_ttl: Duration::from_secs(60),
            ..MinterConfig::default()
        });
        let draft = Draft::new(
            ServiceId::new("cart").unwrap(),
            EndpointId::from_bytes([1; 16]),
        )
        .with_version(version)
        .with_state(line.to_vec());
        minter.mint(draft).unwrap()
    }

    /// The ballot of a request whose client was acknowledged on `on`, at `attempt`.
    fn ballot(on: &Scone, attempt: u32) -> Option<Ballot> {
        Some(Ballot {
            acknowledged: VersionId::of(on),
            attempt,
        })
    }

    #[test]
    fn of_two_lines_from_one_version_the_later_attempts_wins_whichever_comes_first() {
        let after =
            |parent: &Scone, lineage: &Lineage| Lineage::after(VersionId::of(parent), lineage);
        let v1 = mint(1, b"base");
        let lineage = after(&v1, &Lineage::default());
        // Attempt 0 from v1 was given up on; attempt 1 (the retry) was acknowledged.
        let (gave_up, retry) = (mint(2, b"attempt 0"), mint(2, b"attempt 1"));
        for late_first in [false, true] {
            let store = SessionStore::new(8);
            assert_eq!(
                store.put(v1.clone(), Lineage::default(), None),
                Stored::Kept
            );
            let session = SessionId::of(&v1);
            if late_first {
                // The given-up attempt's copy came first: the retry's replaces it.
                let kept = store.put(gave_up.clone(), lineage.clone(), ballot(&v1, 0));
                assert_eq!(kept, Stored::Kept);
                let kept = store.put(retry.clone(), lineage.clone(), ballot(&v1, 1));
                assert_eq!(kept, Stored::Kept);
            } else {
                // The retry's came first: the given-up attempt's, late, does not replace
                // it, whatever the digests' order.
                let kept = store.put(retry.clone(), lineage.clone(), ballot(&v1, 1));
                assert_eq!(kept, Stored::Kept);
                let late = store.put(gave_up.clone(), lineage.clone(), ballot(&v1, 0));
                assert_eq!(late, Stored::Forked);
                // Nor does its next version.
                let late_v3 = mint(3, b"attempt 0, then more");
                let late_lineage = after(&gave_up, &lineage);
                let late = store.put(late_v3, late_lineage, ballot(&v1, 0));
                assert_eq!(late, Stored::Forked);
            }
            let held = store.get(&session).unwrap();
            assert_eq!(
                held.scone().state(),
                b"attempt 1",
                "late first: {late_first}"
            );
            assert_eq!(held.ballot(), ballot(&v1, 1));
        }
    }

    #[test]
    fn another_line_does_not_replace_the_held_one_unless_it_is_an_orphan() {
        let store = SessionStore::new(8);
        let v1 = mint(1, b"base");
        let (a2, b2) = (mint(2, b"a"), mint(2, b"b"));
        let after =
            |parent: &Scone, lineage: &Lineage| Lineage::after(VersionId::of(parent), lineage);
        let root = Lineage::default();
        assert_eq!(store.put(v1.clone(), root.clone(), None), Stored::Kept);
        assert_eq!(store.put(a2.clone(), after(&v1, &root), None), Stored::Kept);
        // Line b: its version 3 outnumbers a2, but descends from b2, not from a2.
        let b3 = mint(3, b"b3");
        let b3_lineage = after(&b2, &after(&v1, &root));
        assert_eq!(
            store.put(b3.clone(), b3_lineage.clone(), None),
            Stored::Forked
        );
        assert_eq!(store.get_scone(&SessionId::of(&a2)).unwrap().state(), b"a");
        // Acknowledged on a2: line b cannot replace it even so.
        assert_eq!(
            store.put(b3.clone(), b3_lineage.clone(), ballot(&a2, 0)),
            Stored::Forked
        );
        // But a line the client was acknowledged on replaces an orphan (a2, when the
        // client was acknowledged on b2).
        assert_eq!(store.put(b3, b3_lineage, ballot(&b2, 0)), Stored::Kept);
        assert_eq!(store.get_scone(&SessionId::of(&a2)).unwrap().state(), b"b3");

        // b3 was made by a request acknowledged on b2: a line made from v1 does not
        // replace it (its request came before).
        let session = SessionId::of(&a2);
        let a3 = mint(3, b"a3");
        let a3_lineage = after(&a2, &after(&v1, &root));
        assert_eq!(store.put(a3, a3_lineage, ballot(&v1, 0)), Stored::Forked);

        // Two lines that both continue v1, made by requests of one ballot (two clients
        // of one session): the higher (version, digest) wins, the same on every node,
        // whichever arrives first.
        let store = SessionStore::new(8);
        assert_eq!(store.put(v1.clone(), root.clone(), None), Stored::Kept);
        let (x2, y2) = (mint(2, b"x"), mint(2, b"y"));
        let lineage = after(&v1, &root);
        assert_eq!(
            store.put(x2.clone(), lineage.clone(), ballot(&v1, 0)),
            Stored::Kept
        );
        let y2_wins = VersionId::of(&y2).digest > VersionId::of(&x2).digest;
        let stored = store.put(y2.clone(), lineage, ballot(&v1, 0));
        assert_eq!(stored == Stored::Kept, y2_wins, "{stored:?}");
        let winner = if y2_wins { y2 } else { x2 };
        assert_eq!(
            store.get_scone(&session).unwrap().encoded(),
            winner.encoded()
        );
    }
}
