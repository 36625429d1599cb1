//! Sealed state: a SCONE whose state its holder cannot read.
//!
//! A SCONE's state is signed, not hidden: whoever holds it can read it. A service that must
//! keep its state from the holder (the way the `cookie` crate's private jar, PASETO `local`
//! tokens or Fernet do) *seals* it: the state field carries
//!
//! ```text
//! sealed = nonce:24 bytes | ciphertext | tag:16 bytes
//! ```
//!
//! XChaCha20-Poly1305 under a key derived from the service's signing secret (blake3
//! `derive_key("scone 2026-11-25 sealed state v1", seed)` over the 32-byte ed25519 seed:
//! a context of its own, so the sealing key is never the tag key or the signing key),
//! with a fresh random nonce per seal; 24-byte nonces are large enough to draw at random
//! for as many SCONEs as a service will ever mint.
//!
//! Everything else stays as it was. The claims (service, endpoint, object, version, expiry,
//! key ID) stay readable, so holders, caches and relays work as before; the signature covers
//! the ciphertext, so a public [`Verifier`](crate::Verifier) still checks sealed SCONEs
//! without being able to read them. Only a holder of the signing key opens them.
//!
//! The ciphertext is bound, through the AEAD's associated data, to the SCONE it was sealed
//! for: its service, endpoint, object and version (see [`SealBinding`]). The signature
//! already stops a holder from moving it; the binding stops the service itself from being
//! led to mint one session's sealed state under another session's claims, which would
//! otherwise open there as if it belonged.
//!
//! The associated data is, byte by byte (see the crate's [`format`](mod@crate::format)):
//!
//! ```text
//! aad = service_len:u8 | service:bytes | endpoint:16 bytes | object:u64 LE | version:u64 LE
//! ```
//!
//! # Sealed is a setting of the service, and a claim of each SCONE
//! Whether a service seals is its configuration, and all servers of a service must agree
//! on it. Each SCONE says whether its state is sealed (the signed `sealed` claim, which
//! [`StateSealer::seal_draft`] sets; [`Scone::is_sealed`]), and its `state_format` names
//! the plaintext's encoding. So a sealing server refuses an unsealed state without trying
//! to decrypt it ([`SealedError::NotSealed`]), a server that does not seal refuses a
//! sealed one rather than hand a handler ciphertext (`scone-rpc`'s typed state loader
//! does), and `scone inspect` shows which it is. Switching a live service over makes the
//! SCONEs already out unreadable to it.
//!
//! # Keys
//! The sealing key follows the signing key, and a SCONE names the key that signed it, so
//! [`StateSealer::open_scone`] opens with the key of the same ID. After a rotation the
//! server needs the older *signing* key (not only its public half) to keep opening sealed
//! SCONEs signed by it until they expire: [`StateSealer::with_older_key`].
//!
//! ```
//! use scone::sealed::{SealBinding, StateSealer};
//! use scone::{Draft, EndpointId, Minter, ServiceId, SigningKey};
//!
//! let key = SigningKey::generate()?;
//! let sealer = StateSealer::new(&key);
//! let mut draft = Draft::new(ServiceId::new("cart")?, EndpointId::random()?)
//!     .with_state(*b"2 apples");
//! sealer.seal_draft(&mut draft)?;
//! let scone = Minter::new(key).mint(draft)?;
//! assert_ne!(scone.state(), b"2 apples"); // what the holder sees
//! assert_eq!(sealer.open_scone(&scone)?, b"2 apples"); // what the service sees
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use smallvec::SmallVec;
use zeroize::Zeroizing;

use crate::error::RejectReason;
use crate::ids::{EndpointId, KeyId, ObjectId, ServiceId, MAX_SERVICE_ID_LEN};
use crate::keys::SigningKey;
use crate::mint::Draft;
use crate::scone::Scone;

/// blake3 key-derivation context of the sealing key: a purpose of its own, so the sealing
/// key shares nothing usable with the signing key or the issuer tag key.
const SEALING_KEY_CONTEXT: &str = "scone 2026-11-25 sealed state v1";

/// Bytes of the random nonce that opens every sealed state.
pub const NONCE_LEN: usize = 24;

/// Bytes of the authentication tag that ends every sealed state.
pub const TAG_LEN: usize = 16;

/// What sealing adds to a state: the nonce before it and the tag after it.
pub const SEALED_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Longest associated data: service length and name, endpoint, object, version.
const MAX_AAD_LEN: usize = 1 + MAX_SERVICE_ID_LEN + 16 + 8 + 8;

// The service's length is written as one byte.
const _: () = assert!(MAX_SERVICE_ID_LEN <= u8::MAX as usize);

/// A failure to seal or open a state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealedError {
    /// The SCONE's claims say its state is not sealed: a sealing service refuses it
    /// without trying to open it (minted by a server that does not seal, or by hand).
    #[error("the scone's state is not sealed, and this service seals its state")]
    NotSealed,
    /// Too short to hold a nonce and a tag: not a sealed state (or cut short).
    #[error(
        "sealed state is {len} bytes, shorter than the {SEALED_OVERHEAD} bytes of nonce and tag"
    )]
    Truncated {
        /// Its length in bytes.
        len: usize,
    },
    /// The tag does not check: another key, tampered bytes, sealed for another SCONE, or
    /// not sealed at all. The AEAD does not say which, by design.
    #[error("sealed state does not open (wrong key, tampered, or sealed for another scone)")]
    Open,
    /// Signed (and so sealed) by a key this sealer does not hold.
    #[error("no sealing key for key id {0}")]
    UnknownKey(KeyId),
    /// The state is too large for the cipher (about 256 GiB; never with SCONE size limits).
    #[error("state is too large to seal")]
    TooLarge,
    /// The operating system's random generator failed to give a nonce.
    #[error("no randomness available for a nonce")]
    Random(#[source] getrandom::Error),
}

impl SealedError {
    /// The wire code for a SCONE refused because its state did not open: the SCONE is
    /// signed, but what it carries is not a state this service can read.
    pub fn reason(&self) -> RejectReason {
        RejectReason::Malformed
    }
}

/// The identity of the SCONE a state is sealed for; the AEAD's associated data.
///
/// Service, endpoint, object and version: what names one version of one session. The
/// version is in it because the server seals a draft before minting it, when the draft's
/// version is known, and every new version is sealed afresh; so a sealed state opens in
/// exactly the SCONE it was sealed for. Status and times are not: they describe the SCONE,
/// not whose state it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealBinding<'a> {
    /// The service the state belongs to.
    pub service: &'a ServiceId,
    /// The endpoint (session) it belongs to.
    pub endpoint: EndpointId,
    /// The server object it belongs to.
    pub object: ObjectId,
    /// The state version.
    pub version: u64,
}

impl<'a> SealBinding<'a> {
    /// The binding of the SCONE `draft` will be minted as.
    pub fn of_draft(draft: &'a Draft) -> Self {
        Self {
            service: &draft.service,
            endpoint: draft.endpoint,
            object: draft.object,
            version: draft.version,
        }
    }

    /// The binding of `scone`.
    pub fn of_scone(scone: &'a Scone) -> Self {
        Self {
            service: scone.service(),
            endpoint: scone.endpoint(),
            object: scone.object(),
            version: scone.version(),
        }
    }

    /// The associated data: every field at a fixed place or length-prefixed, so no two
    /// bindings encode alike. On the stack: it is built on every seal and open.
    fn aad(&self) -> Aad {
        let service = self.service.as_str().as_bytes();
        let mut aad = Aad {
            bytes: [0; MAX_AAD_LEN],
            len: 0,
        };
        // A ServiceId is at most MAX_SERVICE_ID_LEN bytes (checked above to fit a u8).
        aad.push(&[service.len() as u8]);
        aad.push(service);
        aad.push(self.endpoint.as_bytes());
        aad.push(&self.object.0.to_le_bytes());
        aad.push(&self.version.to_le_bytes());
        aad
    }
}

/// A binding's associated data, in a fixed buffer large enough for any binding.
#[derive(PartialEq, Eq, Debug)]
struct Aad {
    bytes: [u8; MAX_AAD_LEN],
    len: usize,
}

impl Aad {
    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Seals and opens a service's state with keys derived from its signing keys.
///
/// Made from the signing key the service mints with; that key seals. Older signing keys
/// added with [`with_older_key`](Self::with_older_key) only open. The derived keys are
/// wiped from memory when the sealer is dropped.
#[derive(Clone)]
pub struct StateSealer {
    /// The ciphers by the ID of the signing key they derive from; the first seals. A
    /// service has one key, two or three during a rotation: so inline, searched in order.
    keys: SmallVec<[(KeyId, XChaCha20Poly1305); 1]>,
}

impl StateSealer {
    /// A sealer for the service signing with `key`.
    pub fn new(key: &SigningKey) -> Self {
        let mut keys = SmallVec::new();
        keys.push((key.key_id(), cipher_for(key)));
        Self { keys }
    }

    /// Also opens states sealed under `key`, an older signing key of the service, so
    /// SCONEs minted before a rotation stay readable until they expire.
    pub fn with_older_key(mut self, key: &SigningKey) -> Self {
        if !self.keys.iter().any(|(id, _)| *id == key.key_id()) {
            self.keys.push((key.key_id(), cipher_for(key)));
        }
        self
    }

    /// The ID of the signing key whose derived key seals.
    pub fn key_id(&self) -> KeyId {
        self.keys[0].0
    }

    /// Seals `plaintext` for the SCONE `binding` names, under a fresh random nonce.
    pub fn seal(
        &self,
        binding: &SealBinding<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealedError> {
        let mut buffer = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
        buffer.extend_from_slice(plaintext);
        self.seal_vec(binding, buffer)
    }

    /// Seals the plaintext in `buffer`, in place: the plaintext is overwritten by the
    /// ciphertext, and the buffer is reused (it grows only if it has no room for the
    /// nonce and tag).
    pub fn seal_vec(
        &self,
        binding: &SealBinding<'_>,
        mut buffer: Vec<u8>,
    ) -> Result<Vec<u8>, SealedError> {
        let mut nonce = XNonce::default();
        getrandom::fill(&mut nonce).map_err(SealedError::Random)?;
        let len = buffer.len();
        buffer.reserve(SEALED_OVERHEAD);
        // Make room for the nonce in front: move the plaintext along.
        buffer.resize(NONCE_LEN + len, 0);
        buffer.copy_within(..len, NONCE_LEN);
        buffer[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self.keys[0]
            .1
            .encrypt_in_place_detached(&nonce, binding.aad().as_slice(), &mut buffer[NONCE_LEN..])
            .map_err(|_| SealedError::TooLarge)?;
        buffer.extend_from_slice(&tag);
        Ok(buffer)
    }

    /// Seals `draft`'s state for the SCONE it will be minted as, and marks the draft
    /// sealed ([`Draft::sealed`]); its state format, which names the plaintext's encoding,
    /// is left as it is. Set the draft's service, endpoint, object and version first:
    /// changing them afterwards breaks the binding.
    pub fn seal_draft(&self, draft: &mut Draft) -> Result<(), SealedError> {
        let plaintext = std::mem::take(&mut draft.state);
        draft.state = self.seal_vec(&SealBinding::of_draft(draft), plaintext)?;
        draft.sealed = true;
        Ok(())
    }

    /// Opens `sealed`, a state sealed for the SCONE `binding` names, trying each key
    /// (the sealing key first).
    pub fn open(&self, binding: &SealBinding<'_>, sealed: &[u8]) -> Result<Vec<u8>, SealedError> {
        let aad = binding.aad();
        let (nonce, ciphertext, tag) = split(sealed)?;
        self.keys
            .iter()
            .find_map(|(_, cipher)| open_with(cipher, aad.as_slice(), nonce, ciphertext, tag).ok())
            .ok_or(SealedError::Open)
    }

    /// Opens the state of `scone`, with the key derived from the signing key that signed
    /// it. Verify the SCONE first: opening proves the state was sealed by the service, not
    /// that the SCONE is current or meant for this server. A SCONE whose claims say its
    /// state is not sealed is refused ([`SealedError::NotSealed`]) before any decryption.
    pub fn open_scone(&self, scone: &Scone) -> Result<Vec<u8>, SealedError> {
        if !scone.is_sealed() {
            return Err(SealedError::NotSealed);
        }
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == scone.key_id())
            .ok_or(SealedError::UnknownKey(scone.key_id()))?;
        let (nonce, ciphertext, tag) = split(scone.state())?;
        open_with(
            cipher,
            SealBinding::of_scone(scone).aad().as_slice(),
            nonce,
            ciphertext,
            tag,
        )
    }
}

impl fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material: the key IDs say which keys it holds.
        let ids: SmallVec<[KeyId; 1]> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("StateSealer")
            .field("key_ids", &ids)
            .finish()
    }
}

/// The cipher under the sealing key derived from `key`'s secret.
fn cipher_for(key: &SigningKey) -> XChaCha20Poly1305 {
    // Both copies of secret material are wiped when dropped; the cipher wipes its own.
    let seed = Zeroizing::new(key.ed25519().to_bytes());
    let derived = Zeroizing::new(blake3::derive_key(SEALING_KEY_CONTEXT, &*seed));
    XChaCha20Poly1305::new(Key::from_slice(&*derived))
}

/// Splits a sealed state into nonce, ciphertext and tag.
fn split(sealed: &[u8]) -> Result<(&XNonce, &[u8], &Tag), SealedError> {
    if sealed.len() < SEALED_OVERHEAD {
        return Err(SealedError::Truncated { len: sealed.len() });
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    // The lengths are exact here, so `from_slice` cannot panic.
    Ok((XNonce::from_slice(nonce), ciphertext, Tag::from_slice(tag)))
}

/// Decrypts into a new buffer; the plaintext is only returned once the tag checks.
fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    nonce: &XNonce,
    ciphertext: &[u8],
    tag: &Tag,
) -> Result<Vec<u8>, SealedError> {
    let mut buffer = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(nonce, aad, &mut buffer, tag)
        .map_err(|_| SealedError::Open)?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(service: &ServiceId) -> SealBinding<'_> {
        SealBinding {
            service,
            endpoint: EndpointId::from_bytes([3; 16]),
            object: ObjectId(7),
            version: 2,
        }
    }

    #[test]
    fn sealing_reuses_a_buffer_with_room() {
        let sealer = StateSealer::new(&SigningKey::from_seed(&[1; 32]));
        let service = ServiceId::new("cart").unwrap();
        let mut buffer = Vec::with_capacity(64);
        buffer.extend_from_slice(b"abc");
        let pointer = buffer.as_ptr();
        let sealed = sealer.seal_vec(&binding(&service), buffer).unwrap();
        assert_eq!(sealed.as_ptr(), pointer);
        assert_eq!(sealed.len(), 3 + SEALED_OVERHEAD);
        assert_eq!(sealer.open(&binding(&service), &sealed).unwrap(), b"abc");
    }

    #[test]
    fn the_sealing_key_is_neither_the_seed_nor_the_tag_key() {
        let key = SigningKey::from_seed(&[5; 32]);
        let derived = blake3::derive_key(SEALING_KEY_CONTEXT, &key.ed25519().to_bytes());
        assert_ne!(&derived, key.tag_key());
        assert_ne!(derived, [5; 32]);
    }

    #[test]
    fn bindings_that_differ_anywhere_encode_differently() {
        let a = ServiceId::new("ab").unwrap();
        let b = ServiceId::new("a").unwrap();
        let base = binding(&a);
        let others = [
            binding(&b),
            SealBinding {
                endpoint: EndpointId::from_bytes([4; 16]),
                ..base
            },
            SealBinding {
                object: ObjectId(8),
                ..base
            },
            SealBinding { version: 3, ..base },
        ];
        for other in others {
            assert_ne!(other.aad().as_slice(), base.aad().as_slice());
        }
    }
}
