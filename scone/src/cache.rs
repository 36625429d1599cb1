//! A bounded, shared LRU cache of SCONEs: by service ID for clients, by (client, service) for relays.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::clock::{self, Clock};
use crate::ids::ServiceId;
use crate::scone::Scone;

/// Bounds of a [`SconeCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries; the least recently used goes first.
    pub max_entries: NonZeroUsize,
    /// Most encoded bytes of all cached SCONEs together.
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What [`SconeCache::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored under a key that was empty.
    Inserted,
    /// Stored in place of an older SCONE or another session's.
    Replaced,
    /// Not stored: the cache holds a newer version of the same session.
    Stale,
    /// Not stored: it is larger than the whole cache may hold.
    TooLarge,
    /// Not stored: it has expired.
    Expired,
}

struct Inner<K: Hash + Eq> {
    entries: LruCache<K, Scone>,
    bytes: usize,
    /// Entries dropped to stay within the bounds, since the cache was made.
    evictions: u64,
}

impl<K: Hash + Eq> Inner<K> {
    /// Drops the least recently used entry, if any; returns whether one was dropped.
    fn evict_one(&mut self) -> bool {
        match self.entries.pop_lru() {
            Some((_, evicted)) => {
                self.bytes -= evicted.encoded_len();
                self.evictions += 1;
                true
            }
            None => false,
        }
    }
}

/// A bounded LRU cache of SCONEs, safe to share across tasks (`Clone` shares it).
///
/// Bounded by entry count and by bytes; expired SCONEs are dropped when met. It never
/// replaces a SCONE with an older version of the same session (same service, endpoint and
/// object), so a late reply cannot roll state back.
pub struct SconeCache<K: Hash + Eq = ServiceId> {
    /// One lock: every operation is a few pointer moves, never held across an await.
    inner: Arc<Mutex<Inner<K>>>,
    /// Bounds checked on every put.
    limits: CacheLimits,
    /// Expiry is checked against it.
    clock: Arc<dyn Clock>,
}

impl<K: Hash + Eq> Clone for SconeCache<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            limits: self.limits,
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for SconeCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SconeCache")
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .field("limits", &self.limits)
            .finish()
    }
}

impl<K: Hash + Eq> Default for SconeCache<K> {
    fn default() -> Self {
        Self::new(CacheLimits::default())
    }
}

impl<K: Hash + Eq> SconeCache<K> {
    /// An empty cache with `limits` and the system clock.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                // Grown as entries come, not sized for the bound up front (a client's store
                // usually holds a SCONE or two); `put` enforces the bound itself.
                entries: LruCache::unbounded(),
                bytes: 0,
                evictions: 0,
            })),
            limits,
            clock: clock::system(),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        // A panic elsewhere while holding the lock leaves consistent data (every update is
        // a complete step), so recover the guard rather than spread the panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `scone` under `key`, evicting least recently used entries to stay in bounds.
    ///
    /// Keeps a [compacted](Scone::compacted) copy, so that the byte bound holds for what
    /// the cache really keeps alive, whatever buffer the SCONE was decoded from.
    pub fn put(&self, key: K, scone: Scone) -> PutOutcome {
        let size = scone.encoded_len();
        if size > self.limits.max_bytes {
            return PutOutcome::TooLarge;
        }
        if scone.is_expired_at(self.clock.now_ms()) {
            return PutOutcome::Expired;
        }
        // Copied before taking the lock.
        let scone = scone.compacted();
        let mut guard = self.lock();
        let inner = &mut *guard;
        // The common case, a newer version of a cached session: replace it in place (one
        // lookup, no allocation), which also makes it the most recently used.
        if let Some(old) = inner.entries.get_mut(&key) {
            if same_session(old, &scone) && old.version() > scone.version() {
                return PutOutcome::Stale;
            }
            let old = std::mem::replace(old, scone);
            inner.bytes = inner.bytes - old.encoded_len() + size;
            // Never evicts the entry just replaced: it is the most recent.
            while inner.bytes > self.limits.max_bytes && inner.entries.len() > 1 {
                if !inner.evict_one() {
                    break;
                }
            }
            return PutOutcome::Replaced;
        }
        // Evict by hand rather than let the LRU do it, so the byte count stays exact.
        while inner.entries.len() >= self.limits.max_entries.get()
            || inner.bytes + size > self.limits.max_bytes
        {
            if !inner.evict_one() {
                break;
            }
        }
        inner.entries.put(key, scone);
        inner.bytes += size;
        PutOutcome::Inserted
    }

    /// The SCONE under `key`, unless it has expired (then it is dropped).
    pub fn get(&self, key: &K) -> Option<Scone> {
        let now_ms = self.clock.now_ms();
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(scone) if !scone.is_expired_at(now_ms) => Some(scone.clone()),
            Some(_) => {
                if let Some(expired) = inner.entries.pop(key) {
                    inner.bytes -= expired.encoded_len();
                }
                None
            }
            None => None,
        }
    }

    /// The SCONE under `key` even if it has expired, without dropping it.
    ///
    /// For a client that attaches what it holds and lets the server say `expired`, rather
    /// than silently starting a new session.
    pub fn get_including_expired(&self, key: &K) -> Option<Scone> {
        self.lock().entries.get(key).cloned()
    }

    /// Takes the SCONE under `key` out of the cache if `condition` holds for it.
    pub fn remove_if(&self, key: &K, condition: impl FnOnce(&Scone) -> bool) -> Option<Scone> {
        let mut inner = self.lock();
        if !condition(inner.entries.peek(key)?) {
            return None;
        }
        let removed = inner.entries.pop(key)?;
        inner.bytes -= removed.encoded_len();
        Some(removed)
    }

    /// Empties the cache.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.bytes = 0;
    }

    /// Takes the SCONE under `key` out of the cache.
    pub fn remove(&self, key: &K) -> Option<Scone> {
        let mut inner = self.lock();
        let removed = inner.entries.pop(key)?;
        inner.bytes -= removed.encoded_len();
        Some(removed)
    }

    /// Drops every expired SCONE; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now_ms = self.clock.now_ms();
        let mut inner = self.lock();
        let before = inner.entries.len();
        let mut kept = LruCache::unbounded();
        // Oldest first, so the survivors keep their recency order.
        while let Some((key, scone)) = inner.entries.pop_lru() {
            if !scone.is_expired_at(now_ms) {
                kept.put(key, scone);
            }
        }
        inner.entries = kept;
        inner.bytes = inner.entries.iter().map(|(_, s)| s.encoded_len()).sum();
        before - inner.entries.len()
    }

    /// How many unexpired SCONEs it holds: what [`get`](Self::get) would return. (Expired
    /// ones still count against the bounds until they are met or purged.)
    pub fn len(&self) -> usize {
        let now_ms = self.clock.now_ms();
        let inner = self.lock();
        inner
            .entries
            .iter()
            .filter(|(_, scone)| !scone.is_expired_at(now_ms))
            .count()
    }

    /// Whether it holds no unexpired SCONE.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries count against the bounds: [`len`](Self::len) plus expired ones
    /// not yet met. Constant time, unlike `len`, so it suits a metrics scrape.
    pub fn len_including_expired(&self) -> usize {
        self.lock().entries.len()
    }

    /// How many entries were dropped to stay within the bounds (the least recently used
    /// first), since the cache was made. Expired entries dropped when met, removals and
    /// replacements by a newer version do not count.
    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// Encoded bytes of all cached SCONEs.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Its bounds.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }
}

fn same_session(a: &Scone, b: &Scone) -> bool {
    a.service() == b.service() && a.endpoint() == b.endpoint() && a.object() == b.object()
}
