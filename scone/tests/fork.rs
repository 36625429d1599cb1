//! Presigned nonces across `fork`: a child never spends a nonce its parent spends too.
//!
//! In a file of its own, so that the test binary has as few threads as possible when it
//! forks (the child inherits only the forking thread; a lock another thread held stays
//! held in the child).

#![cfg(target_os = "linux")]

use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::Signature;
use scone::presign::NoncePool;

/// Forks; the child runs `sign` and hands the 64-byte signature back through a pipe.
fn fork_and_sign(sign: impl FnOnce() -> Option<[u8; 64]>) -> [u8; 64] {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for `pipe` to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_end, write_end] = fds;
    // SAFETY: the child does minimal work (one signature, which takes no lock another
    // thread may hold and allocates nothing), writes it, and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let signature = sign().unwrap_or([0; 64]);
        // SAFETY: writes 64 bytes from a live buffer, then ends the child at once (no
        // destructors, no exit handlers of the parent's).
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
        if unsafe { libc::poll(&mut poll, 1, 10_000) } <= 0 {
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
    // SAFETY: reaps our own child, and closes our read end.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(read_end);
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    signature
}

#[test]
fn parent_and_child_never_sign_with_the_same_nonce() {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let public = signing.verifying_key();
    let expanded = ExpandedSecretKey::from(signing.as_bytes());
    let pool = NoncePool::start(&expanded, 16).unwrap();
    // A full pool: without the fork check, parent and child would pop the same top nonce.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pool.ready() < 16 {
        assert!(std::time::Instant::now() < deadline, "pool never filled");
        std::thread::yield_now();
    }
    let child = fork_and_sign(|| pool.sign(&expanded, public.as_bytes(), b"from the child"));
    let parent = pool
        .sign(&expanded, public.as_bytes(), b"from the parent")
        .unwrap();
    assert_ne!(
        child[..32],
        parent[..32],
        "parent and child signed with one nonce: the key is revealed"
    );
    public
        .verify_strict(b"from the child", &Signature::from_bytes(&child))
        .unwrap();
    public
        .verify_strict(b"from the parent", &Signature::from_bytes(&parent))
        .unwrap();
    // The parent's pool is untouched by the child's wipe.
    assert!(pool.ready() > 0);
}
