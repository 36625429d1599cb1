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
//! never waits. A nonce computed inline also hashes the message, so that even a repeated
//! OS generator output could not make it repeat for a different message.
//!
//! # Copies of the process
//! A nonce is safe only if it is used once, and a pool is memory: whatever copies the
//! process copies the pool, and two copies that sign different messages with one pooled
//! nonce reveal the signing key.
//!
//! - **fork** (without exec) is handled: the pool notices it is in a child (on Linux, by a
//!   page the kernel wipes in the child, `MADV_WIPEONFORK`; elsewhere, or on kernels
//!   before 4.14, by the process ID recorded at creation, checked at every signature),
//!   wipes its nonces there, and from then on the child computes every nonce inline from
//!   fresh OS randomness (the refill thread does not exist in the child). A child that
//!   signs a lot should make its own [`Minter`](crate::Minter) with a pool after forking.
//! - **VM snapshots and process checkpoint/restore** (a VM restored, or cloned, from a
//!   snapshot; CRIU) are *not* detected: every restored copy starts with the pool as it
//!   was at the snapshot and will spend the same nonces on different messages. Where
//!   that can happen, turn presigning off: don't call
//!   [`Minter::with_nonce_pool`](crate::Minter::with_nonce_pool) (in `scone-rpc`, set
//!   `LayerConfig::presigned_nonces` to 0), and signing uses RFC 8032's deterministic
//!   nonces, which a replay cannot turn against the key. What bounds the risk otherwise:
//!   only the nonces in the pool at the snapshot can repeat, at most its capacity; every
//!   later one is drawn from fresh OS randomness (which a hypervisor that reseeds guests on
//!   restore, as Linux does on a VM generation ID change, keeps fresh) and, when made
//!   inline, hashes the message too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};

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

    /// A new nonce, or `None` if the OS generator fails (see the module docs). `message`
    /// is the message it will sign when it is made inline, empty for the pool; it comes
    /// last in the hash, so the input is unambiguous.
    fn fresh_nonce(&self, message: &[u8]) -> Option<Nonce> {
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
                .chain_update(counter.to_le_bytes())
                .chain_update(message),
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
            let Some(nonce) = self.fresh_nonce(&[]) else {
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

/// Tells a forked child from the process that made it (see the module docs).
struct ForkGuard {
    /// On Linux, a private page holding 1 and marked `MADV_WIPEONFORK`: the kernel gives
    /// any forked child that page zeroed, so one load tells a child from its parent,
    /// without the system call a process ID check costs (about 75 ns a signature, next to
    /// the 1 µs the pool brings signing down to). `None` where the kernel refuses.
    #[cfg(target_os = "linux")]
    page: Option<(std::ptr::NonNull<std::sync::atomic::AtomicU8>, usize)>,
    /// The process the guard was made in: the check where there is no such page.
    pid: u32,
}

// SAFETY: the page is written once, in `new`, before the guard is shared, then only read
// (atomically) until `drop` unmaps it; nothing else refers to it.
#[cfg(target_os = "linux")]
unsafe impl Send for ForkGuard {}
// SAFETY: as above.
#[cfg(target_os = "linux")]
unsafe impl Sync for ForkGuard {}

impl ForkGuard {
    fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            page: Self::wipe_on_fork_page(),
            pid: std::process::id(),
        }
    }

    /// A page of our own, marked, or `None` if the kernel does not know the advice.
    #[cfg(target_os = "linux")]
    fn wipe_on_fork_page() -> Option<(std::ptr::NonNull<std::sync::atomic::AtomicU8>, usize)> {
        // SAFETY: `sysconf` only reads a system setting.
        let size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&size| size > 0)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; it
        // touches no existing memory, and failure is checked.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: `page..page + size` is the mapping just made, and ours alone.
        if unsafe { libc::madvise(page, size, libc::MADV_WIPEONFORK) } != 0 {
            // SAFETY: as above; unmapped once, and never used again.
            unsafe { libc::munmap(page, size) };
            return None;
        }
        let flag = std::ptr::NonNull::new(page.cast::<std::sync::atomic::AtomicU8>())?;
        // SAFETY: the page is mapped, writable and page-aligned, so valid for an `AtomicU8`.
        unsafe { flag.as_ref() }.store(1, Ordering::Relaxed);
        Some((flag, size))
    }

    /// Whether this is a forked child of the process that made the guard.
    fn forked(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Some((flag, _)) = self.page {
            // SAFETY: the page stays mapped for the guard's life (see `drop`).
            return unsafe { flag.as_ref() }.load(Ordering::Relaxed) == 0;
        }
        std::process::id() != self.pid
    }

    /// A guard that believes it was made in another process, as in a forked child
    /// whose kernel has no wipe-on-fork.
    #[cfg(test)]
    fn of_another_process() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            page: None,
            pid: std::process::id().wrapping_add(1),
        }
    }
}

impl Drop for ForkGuard {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some((flag, size)) = self.page.take() {
            // SAFETY: the mapping made in `wipe_on_fork_page`, unmapped once.
            unsafe { libc::munmap(flag.as_ptr().cast(), size) };
        }
    }
}

/// A supply of precomputed Ed25519 nonces for one signing key, refilled by a background
/// thread that stops when the pool is dropped.
///
/// Safe across `fork`, not across VM snapshots or checkpoint/restore: see the
/// [module docs](self).
pub struct NoncePool {
    shared: Arc<Shared>,
    /// Checked at every signature: a forked child must never spend the parent's nonces.
    fork_guard: ForkGuard,
}

impl std::fmt::Debug for NoncePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoncePool")
            .field("capacity", &self.shared.capacity)
            .field("ready", &self.ready())
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
        // Before the thread starts: a fork from here on is a fork the guard sees.
        let fork_guard = ForkGuard::new();
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("scone-nonces".into())
            .spawn(move || {
                run_only_when_idle();
                worker.refill_loop()
            })?;
        Ok(Self { shared, fork_guard })
    }

    /// How many nonces are ready now (none in a forked child: see the module docs).
    pub fn ready(&self) -> usize {
        if self.fork_guard.forked() {
            self.wipe_after_fork();
            return 0;
        }
        self.shared.lock().len()
    }

    /// In a forked child: wipes the nonces inherited from the parent, which the parent
    /// (and any other child) may spend too. Only if the lock is free: a thread that held
    /// it at the fork does not exist in the child and will never release it, so waiting
    /// would hang; the nonces are then left unused (never spent) instead.
    fn wipe_after_fork(&self) {
        let mut nonces = match self.shared.nonces.try_lock() {
            Ok(nonces) => nonces,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        // Dropping each nonce wipes its secret in place.
        nonces.clear();
    }

    /// The nonce to sign `message` with: a pooled one, or one made now.
    fn take(&self, message: &[u8]) -> Option<Nonce> {
        if self.fork_guard.forked() {
            self.wipe_after_fork();
            return self.shared.fresh_nonce(message);
        }
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
        nonce.or_else(|| self.shared.fresh_nonce(message))
    }

    /// Signs `message` with `key` (whose public key is `public`), spending one nonce; `None`
    /// if no nonce can be made (no OS randomness), in which case sign deterministically.
    pub fn sign(
        &self,
        key: &ExpandedSecretKey,
        public: &[u8; 32],
        message: &[u8],
    ) -> Option<[u8; 64]> {
        let nonce = self.take(message)?;
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
        if self.fork_guard.forked() {
            // No refill thread to stop in a child, and the lock may never come free.
            self.wipe_after_fork();
            return;
        }
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

    #[test]
    fn the_fork_guard_sees_no_fork_in_its_own_process() {
        assert!(!ForkGuard::new().forked());
        assert!(ForkGuard::of_another_process().forked());
    }

    #[test]
    fn a_forked_pool_wipes_its_nonces_and_signs_with_fresh_ones() {
        let (signing, expanded) = key(4);
        let public = signing.verifying_key();
        let mut pool = NoncePool::start(&expanded, 8).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.ready() < 8 {
            assert!(std::time::Instant::now() < deadline, "pool never filled");
            std::thread::yield_now();
        }
        let inherited: Vec<[u8; 32]> = pool.shared.lock().iter().map(|n| n.commitment).collect();
        // As in a child: the guard says this is another process.
        pool.fork_guard = ForkGuard::of_another_process();
        let signature = pool.sign(&expanded, public.as_bytes(), b"child").unwrap();
        assert!(!inherited.contains(&signature[..32].try_into().unwrap()));
        public
            .verify_strict(b"child", &Signature::from_bytes(&signature))
            .unwrap();
        assert_eq!(pool.ready(), 0);
        assert!(
            pool.shared.lock().is_empty(),
            "the inherited nonces are wiped"
        );
    }

    /// The same with a real fork, where the guard falls back to the process ID.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_fork_with_the_process_id_check_spends_no_parent_nonce() {
        let (signing, expanded) = key(5);
        let public = signing.verifying_key();
        let mut pool = NoncePool::start(&expanded, 8).unwrap();
        pool.fork_guard = ForkGuard {
            page: None,
            pid: std::process::id(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.ready() < 8 {
            assert!(std::time::Instant::now() < deadline, "pool never filled");
            std::thread::yield_now();
        }
        let child = fork_and_sign(|| pool.sign(&expanded, public.as_bytes(), b"child"));
        let parent = pool.sign(&expanded, public.as_bytes(), b"parent").unwrap();
        assert_ne!(
            child[..32],
            parent[..32],
            "parent and child spent one nonce"
        );
        public
            .verify_strict(b"child", &Signature::from_bytes(&child))
            .unwrap();
    }

    /// Forks; the child runs `sign` and hands the signature back through a pipe.
    #[cfg(target_os = "linux")]
    fn fork_and_sign(sign: impl FnOnce() -> Option<[u8; 64]>) -> [u8; 64] {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two descriptors for `pipe` to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read_end, write_end] = fds;
        // SAFETY: the child does only async-signal-safe-ish work (signing touches no lock
        // another thread may hold, and allocates nothing), then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let signature = sign().unwrap_or([0; 64]);
            // SAFETY: writes 64 bytes from a live buffer, then ends the child at once
            // (no destructors, no atexit handlers of the parent's).
            unsafe {
                libc::write(write_end, signature.as_ptr().cast(), 64);
                libc::_exit(0);
            }
        }
        // SAFETY: closes our copy of the write end, so a dead child reads as end of file.
        unsafe { libc::close(write_end) };
        let mut signature = [0u8; 64];
        let mut got = 0;
        while got < 64 {
            let mut poll = libc::pollfd {
                fd: read_end,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; ten seconds, so a hung child fails the test.
            let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
            if ready <= 0 {
                // SAFETY: the child is ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the child did not answer");
            }
            // SAFETY: reads into the rest of a live buffer.
            let n = unsafe { libc::read(read_end, signature[got..].as_mut_ptr().cast(), 64 - got) };
            assert!(n > 0, "the child died before answering");
            got += n as usize;
        }
        let mut status = 0;
        // SAFETY: reaps our child; closes our read end.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
            libc::close(read_end);
        }
        signature
    }
}
