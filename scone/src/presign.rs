//! Offline/online Ed25519 signing: the expensive half of each signature, the nonce
//! commitment `R = r·B`, is computed ahead of time on a background thread.
//!
//! An Ed25519 signature is `(R, s)` with `R = r·B` and `s = r + H(R ‖ A ‖ M)·a`. RFC 8032
//! derives `r` from the message, so `R` can only be computed once the message is known,
//! and that scalar multiplication is most of the cost of signing (about 15 µs). Any `r`
//! that is uniformly random, secret and never reused gives a signature that is just as
//! secure and that every Ed25519 verifier accepts unchanged (verifiers cannot tell how `r`
//! was chosen). So a [`NoncePool`] keeps a supply of `(r, R)` pairs, and signing a message
//! costs two hashes and a scalar multiply-add.
//!
//! The nonces are *hedged*: `r = SHA-512(context ‖ key's hash prefix ‖ 32 fresh OS random
//! bytes ‖ counter)` reduced mod ℓ, so `r` stays secret even if the OS generator were
//! weak, as long as the key is. A nonce is made only when the OS generator answers:
//! without fresh randomness two processes sharing a key could draw the same `r` for
//! different messages, which reveals the key, so then the signer falls back to RFC 8032's
//! deterministic nonce instead. Each nonce is popped under a lock, used once, and its slot
//! and copy wiped. When the pool is empty the signer computes a fresh nonce inline: it
//! never waits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

const NONCE_CONTEXT: &[u8] = b"scone 2026-11-21 presigned ed25519 nonce v1";

/// One single-use nonce and its commitment.
struct Nonce {
    /// The secret nonce scalar `r`.
    r: Scalar,
    /// `R = r·B`, compressed.
    commitment: [u8; 32],
}

impl Nonce {
    /// What a slot holds once its nonce is taken.
    const WIPED: Nonce = Nonce {
        r: Scalar::ZERO,
        commitment: [0; 32],
    };
}

impl Drop for Nonce {
    fn drop(&mut self) {
        self.r.zeroize();
    }
}

/// What the pool and its refill thread share.
struct Shared {
    /// Ready nonces.
    nonces: Mutex<Vec<Nonce>>,
    /// Wakes the refill thread when the pool runs low, or to stop.
    low: Condvar,
    /// How many nonces to keep ready.
    capacity: usize,
    /// Set when the pool is dropped.
    stop: AtomicBool,
    /// Whether the refill thread is waiting for `low`; written and read under the lock,
    /// so signers wake it (a system call) only when it sleeps, not on every nonce.
    sleeping: AtomicBool,
    /// The key's hash prefix, secret: hedges the nonces against a weak OS generator.
    hash_prefix: [u8; 32],
    /// Makes every nonce's hash input distinct.
    counter: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.hash_prefix.zeroize();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Nonce>> {
        self.nonces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new nonce, or `None` if the OS generator fails (see the module docs).
    fn fresh_nonce(&self) -> Option<Nonce> {
        let mut random = [0u8; 32];
        if let Err(error) = getrandom::fill(&mut random) {
            tracing::error!(%error, "no OS randomness: signing with deterministic nonces");
            return None;
        }
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(NONCE_CONTEXT)
                .chain_update(self.hash_prefix)
                .chain_update(random)
                .chain_update(counter.to_le_bytes()),
        );
        random.zeroize();
        let commitment = EdwardsPoint::mul_base(&r).compress().to_bytes();
        Some(Nonce { r, commitment })
    }

    fn refill_loop(&self) {
        loop {
            {
                let mut nonces = self.lock();
                while nonces.len() >= self.capacity && !self.stop.load(Ordering::Acquire) {
                    self.sleeping.store(true, Ordering::Relaxed);
                    nonces = self.low.wait(nonces).unwrap_or_else(|p| p.into_inner());
                    self.sleeping.store(false, Ordering::Relaxed);
                }
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            // Compute outside the lock so signers are never held up; the vector was sized
            // once, so pushing never reallocates (and never leaves copies of nonces behind).
            let Some(nonce) = self.fresh_nonce() else {
                return;
            };
            let mut nonces = self.lock();
            if nonces.len() < self.capacity {
                nonces.push(nonce);
            }
        }
    }
}

/// Lowers the calling thread to the idle scheduling class, where it runs only on cores
/// nothing else wants. The refill thread must never delay a request: while cores are free
/// (a lightly loaded server) it fills the pool at no cost to requests, and when they are
/// all busy it yields to the requests, which then compute nonces as they sign (the same
/// work, done where it is needed).
#[cfg(target_os = "linux")]
fn run_only_when_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads `param` (a valid, live struct) and changes the
    // policy of the calling thread (pid 0) only; it has no other effect on memory.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "nonce refill thread keeps normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn run_only_when_idle() {}

/// A supply of precomputed Ed25519 nonces for one signing key, refilled by a background
/// thread that stops when the pool is dropped.
pub struct NoncePool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NoncePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoncePool")
            .field("capacity", &self.shared.capacity)
            .field("ready", &self.shared.lock().len())
            .finish()
    }
}

impl NoncePool {
    /// Starts a pool keeping `capacity` nonces ready for `key`.
    pub fn start(key: &ExpandedSecretKey, capacity: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            nonces: Mutex::new(Vec::with_capacity(capacity)),
            low: Condvar::new(),
            capacity: capacity.max(1),
            stop: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            hash_prefix: key.hash_prefix,
            counter: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("scone-nonces".into())
            .spawn(move || {
                run_only_when_idle();
                worker.refill_loop()
            })?;
        Ok(Self { shared })
    }

    /// How many nonces are ready now.
    pub fn ready(&self) -> usize {
        self.shared.lock().len()
    }

    fn take(&self) -> Option<Nonce> {
        let mut nonces = self.shared.lock();
        // Swap the wiped value into the slot before popping, so the secret leaves no copy
        // in the pool's buffer.
        let nonce = nonces
            .last_mut()
            .map(|slot| std::mem::replace(slot, Nonce::WIPED));
        nonces.pop();
        if nonces.len() <= self.shared.capacity / 2 && self.shared.sleeping.load(Ordering::Relaxed)
        {
            self.shared.sleeping.store(false, Ordering::Relaxed);
            self.shared.low.notify_one();
        }
        drop(nonces);
        nonce.or_else(|| self.shared.fresh_nonce())
    }

    /// Signs `message` with `key` (whose public key is `public`), spending one nonce; `None`
    /// if no nonce can be made (no OS randomness), in which case sign deterministically.
    pub fn sign(
        &self,
        key: &ExpandedSecretKey,
        public: &[u8; 32],
        message: &[u8],
    ) -> Option<[u8; 64]> {
        let nonce = self.take()?;
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(nonce.commitment)
                .chain_update(public)
                .chain_update(message),
        );
        let s = k * key.scalar + nonce.r;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&nonce.commitment);
        signature[32..].copy_from_slice(s.as_bytes());
        Some(signature)
    }
}

impl Drop for NoncePool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Take the lock so the refill thread is either waiting (and gets the notice) or
        // will see the flag before it waits again.
        let _nonces = self.shared.lock();
        self.shared.low.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier as _};

    fn key(seed: u8) -> (ed25519_dalek::SigningKey, ExpandedSecretKey) {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let expanded = ExpandedSecretKey::from(&signing.to_bytes());
        (signing, expanded)
    }

    #[test]
    fn presigned_signatures_verify_as_standard_ed25519() {
        let (signing, expanded) = key(1);
        let public = signing.verifying_key();
        let pool = NoncePool::start(&expanded, 8).unwrap();
        for message in [&b""[..], b"hello", &[0xAB; 300]] {
            let signature =
                Signature::from_bytes(&pool.sign(&expanded, public.as_bytes(), message).unwrap());
            public.verify_strict(message, &signature).unwrap();
            public.verify(message, &signature).unwrap();
        }
    }

    #[test]
    fn nonces_are_never_reused_and_a_signature_binds_its_message() {
        let (signing, expanded) = key(2);
        let public = signing.verifying_key();
        let pool = NoncePool::start(&expanded, 4).unwrap();
        // More signatures than the pool holds: some nonces come from the inline fallback.
        let signatures: Vec<[u8; 64]> = (0..50)
            .map(|_| {
                pool.sign(&expanded, public.as_bytes(), b"same message")
                    .unwrap()
            })
            .collect();
        let mut commitments: Vec<&[u8]> = signatures.iter().map(|s| &s[..32]).collect();
        commitments.sort();
        commitments.dedup();
        assert_eq!(commitments.len(), signatures.len(), "every R is distinct");
        let signature = Signature::from_bytes(&signatures[0]);
        assert!(public.verify_strict(b"other message", &signature).is_err());
    }

    #[test]
    fn the_pool_refills_in_the_background() {
        let (_, expanded) = key(3);
        let pool = NoncePool::start(&expanded, 32).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.ready() < 32 {
            assert!(std::time::Instant::now() < deadline, "pool never filled");
            std::thread::yield_now();
        }
    }
}
