//! Per-message MACs on a link whose handshake has run: each end seals what it sends and
//! opens what it reads, so a message altered, injected, replayed, reordered, dropped or
//! reflected on the way is told apart from one the peer sent.
//!
//! The handshake derives one key per direction from the secret, the label and both
//! ends' fresh nonces (`MAC(" c-to-s", n_a, n_c)` and `MAC(" s-to-c", n_a, n_c)` in the
//! handshake's notation; never sent). A message's tag is `blake3::keyed_hash(key,
//! count ‖ message)`, where `count` (8 bytes, little-endian) is how many messages were
//! sealed before it in that direction: both ends count, so it is never sent either.

use zeroize::Zeroize;

/// A message's tag.
pub type Tag = [u8; 32];

/// The keys of one end of a link, from [`connect`](super::connect) or
/// [`accept`](super::accept): [`split`](Self::split) them into the half that seals what
/// this end sends and the half that opens what it reads.
pub struct LinkKeys {
    sealing: SealingKey,
    opening: OpeningKey,
}

/// Seals the messages one end sends, in the order it sends them.
pub struct SealingKey {
    key: [u8; 32],
    sealed: u64,
}

/// Opens the messages one end reads, in the order they arrive.
pub struct OpeningKey {
    key: [u8; 32],
    opened: u64,
}

/// A message that was not the peer's next one as it sealed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a message on the link is not the one the peer sealed next: altered, injected, replayed, reordered or reflected on the way")]
pub struct TamperedMessage;

impl LinkKeys {
    /// This end's keys, from the directions' keys.
    pub(super) fn new(sending: [u8; 32], receiving: [u8; 32]) -> Self {
        Self {
            sealing: SealingKey {
                key: sending,
                sealed: 0,
            },
            opening: OpeningKey {
                key: receiving,
                opened: 0,
            },
        }
    }

    /// The sealing and opening halves, for a link whose writes and reads happen apart.
    pub fn split(self) -> (SealingKey, OpeningKey) {
        (self.sealing, self.opening)
    }
}

fn tag(key: &[u8; 32], count: u64, message: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&count.to_le_bytes()).update(message);
    hasher.finalize()
}

impl SealingKey {
    /// The tag of `message`, the next this end sends.
    pub fn seal(&mut self, message: &[u8]) -> Tag {
        let tag = tag(&self.key, self.sealed, message);
        self.sealed += 1;
        *tag.as_bytes()
    }
}

impl OpeningKey {
    /// Whether `message`, the next this end reads, is the peer's next, as it sealed it
    /// (compared in constant time). After an error the link cannot be trusted: drop it.
    pub fn open(&mut self, message: &[u8], sealed: &Tag) -> Result<(), TamperedMessage> {
        let expected = tag(&self.key, self.opened, message);
        self.opened += 1;
        match expected == blake3::Hash::from(*sealed) {
            true => Ok(()),
            false => Err(TamperedMessage),
        }
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpeningKey")
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys").finish_non_exhaustive()
    }
}

impl Drop for SealingKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl Drop for OpeningKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ((SealingKey, OpeningKey), (SealingKey, OpeningKey)) {
        let (up, down) = ([1; 32], [2; 32]);
        (
            LinkKeys::new(up, down).split(),
            LinkKeys::new(down, up).split(),
        )
    }

    #[test]
    fn messages_open_in_the_order_they_were_sealed() {
        let ((mut seal, _), (_, mut open)) = pair();
        for message in [&b"one"[..], b"two", b""] {
            let tag = seal.seal(message);
            assert_eq!(open.open(message, &tag), Ok(()));
        }
    }

    #[test]
    fn an_altered_replayed_reordered_or_reflected_message_is_refused() {
        let ((mut seal, mut own_open), (_, _)) = pair();
        let first = seal.seal(b"first");
        let second = seal.seal(b"second");
        // Altered.
        let ((_, _), (_, mut open)) = pair();
        assert_eq!(open.open(b"firsT", &first), Err(TamperedMessage));
        // Reordered (or the first dropped).
        let ((_, _), (_, mut open)) = pair();
        assert_eq!(open.open(b"second", &second), Err(TamperedMessage));
        // Replayed.
        let ((_, _), (_, mut open)) = pair();
        assert_eq!(open.open(b"first", &first), Ok(()));
        assert_eq!(open.open(b"first", &first), Err(TamperedMessage));
        // Reflected back to the end that sealed it.
        assert_eq!(own_open.open(b"first", &first), Err(TamperedMessage));
    }
}
