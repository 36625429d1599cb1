//! Signing and public keys, their key IDs, text forms and key files.
//!
//! A service holds a [`SigningKey`]; everyone else (clients, relays, peers) holds the
//! [`PublicKey`]. A signing key also derives the service's private *tag key*, so a server
//! can recognise its own SCONEs with one keyed blake3 hash instead of a signature check.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::ids::KeyId;

/// Domain-separation contexts for blake3's key derivation: one per purpose, so no
/// value computed for one use can be replayed as another.
const KEY_ID_CONTEXT: &str = "scone 2026-11-21 key id v1";
const TAG_KEY_CONTEXT: &str = "scone 2026-11-21 issuer tag key v1";

/// First word of a signing key file; lets us refuse a file that holds something else.
const KEY_FILE_PREFIX: &str = "scone-signing-key-v1:";

/// Characters of a 32-byte seed in base64url without padding.
const SEED_TEXT_LEN: usize = 43;

/// Bytes of a key file as [`SigningKey::to_file_text`] writes it.
const KEY_FILE_LEN: usize = KEY_FILE_PREFIX.len() + SEED_TEXT_LEN + 1;

/// Largest key file [`SigningKey::load`] reads: room for the line and stray whitespace.
const MAX_KEY_FILE_BYTES: usize = 4096;

fn key_id_of(public: &ed25519_dalek::VerifyingKey) -> KeyId {
    let digest = blake3::derive_key(KEY_ID_CONTEXT, public.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    KeyId::from_bytes(id)
}

/// A service's ed25519 signing key, with its key ID and derived tag key.
///
/// The secret parts are wiped from memory when the key is dropped.
#[derive(Clone)]
pub struct SigningKey {
    /// The ed25519 key that signs SCONEs (or Merkle roots of batches of them).
    signing: ed25519_dalek::SigningKey,
    /// Names the public half, so verifiers can pick the right key from a key ring.
    key_id: KeyId,
    /// Keys the issuer-only blake3 tag; derived from the secret so it needs no config.
    tag_key: Zeroizing<[u8; 32]>,
}

impl SigningKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(KeyError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key whose 32-byte ed25519 secret is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let key_id = key_id_of(&signing.verifying_key());
        let tag_key = Zeroizing::new(blake3::derive_key(TAG_KEY_CONTEXT, seed));
        Self {
            signing,
            key_id,
            tag_key,
        }
    }

    /// The public half, for verifiers.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_dalek(self.signing.verifying_key())
    }

    /// The ID verifiers know this key by.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub(crate) fn ed25519(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }

    pub(crate) fn tag_key(&self) -> &[u8; 32] {
        &self.tag_key
    }

    /// The key file's text: one line, `scone-signing-key-v1:` then the seed in base64url.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        // Built in place in buffers that are wiped on drop and sized exactly, so that no
        // copy of the secret is left behind in a temporary or a reallocated buffer.
        let mut encoded = Zeroizing::new([0u8; SEED_TEXT_LEN]);
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.signing.as_bytes(), encoded.as_mut())
            .unwrap_or_default();
        debug_assert_eq!(written, SEED_TEXT_LEN);
        let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_LEN));
        text.push_str(KEY_FILE_PREFIX);
        // base64url is ASCII.
        text.push_str(std::str::from_utf8(&encoded[..written]).unwrap_or_default());
        text.push('\n');
        debug_assert_eq!(text.len(), text.capacity());
        text
    }

    /// Parses a key file's text.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let malformed = |why: &str| KeyError::Malformed {
            kind: "signing key file",
            why: why.to_owned(),
        };
        let body = text
            .trim()
            .strip_prefix(KEY_FILE_PREFIX)
            .ok_or_else(|| malformed("it does not start with `scone-signing-key-v1:`"))?;
        // Decoded into a wiped buffer of our own (a decoded `Vec` would be dropped unwiped
        // when decoding fails half way). Room for 48 bytes, so a key of the wrong length is
        // reported as such rather than as bad base64.
        let mut bytes = Zeroizing::new([0u8; 48]);
        if body.len() > SEED_TEXT_LEN + 16 {
            return Err(malformed("expected 32 key bytes, found more"));
        }
        // The decoder's error names the offending character, a piece of the secret: keep
        // it out of the message (which ends up in logs).
        let len = URL_SAFE_NO_PAD
            .decode_slice(body, bytes.as_mut())
            .map_err(|_| malformed("the key is not base64url"))?;
        let seed: &[u8; 32] = bytes[..len]
            .try_into()
            .map_err(|_| malformed(&format!("expected 32 key bytes, found {len}")))?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the key to `path`, readable by its owner only (mode 0600 on Unix).
    ///
    /// Refuses to replace an existing file unless `overwrite` is set.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if overwrite {
            // Remove first so the new file is created with our mode, not the old file's.
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        file.write_all(self.to_file_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)
    }

    /// Reads a key written by [`save`](Self::save).
    ///
    /// On Unix, refuses ([`KeyError::TooOpen`]) a file that its group or others may read,
    /// as ssh does: such a secret may have leaked, and loading it anyway would hide that.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // The mode of the file opened, not of the path, so it cannot change in between.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::TooOpen {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        // Read into a buffer sized once, so it never reallocates (which would leave a copy
        // of the secret in freed memory), and wiped on drop. A key file is one short line;
        // anything longer than the limit is not one.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES + 1));
        file.take(MAX_KEY_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::Malformed {
                kind: "signing key file",
                why: format!("it is longer than {MAX_KEY_FILE_BYTES} bytes"),
            });
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Malformed {
            kind: "signing key file",
            why: "it is not text".to_owned(),
        })?;
        Self::from_file_text(text)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// An ed25519 public key with its key ID; its text form is the 32 bytes in base64url.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    /// The key that checks signatures.
    verifying: ed25519_dalek::VerifyingKey,
    /// Computed once: verifiers index their key ring by it.
    key_id: KeyId,
}

impl PublicKey {
    fn from_dalek(verifying: ed25519_dalek::VerifyingKey) -> Self {
        Self {
            key_id: key_id_of(&verifying),
            verifying,
        }
    }

    /// The public key from its 32 bytes; fails for bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self::from_dalek)
            .map_err(|e| KeyError::Malformed {
                kind: "public key",
                why: e.to_string(),
            })
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.verifying.as_bytes()
    }

    /// The ID this key is known by.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub(crate) fn ed25519(&self) -> &ed25519_dalek::VerifyingKey {
        &self.verifying
    }

    /// The key under another key ID: stands in, in tests, for a key ID collision, which
    /// takes about 2^32 keys to find.
    #[cfg(test)]
    pub(crate) fn with_key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = key_id;
        self
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self}, id {})", self.key_id)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let malformed = |why: String| KeyError::Malformed {
            kind: "public key",
            why,
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|e| malformed(format!("bad base64url ({e})")))?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed(format!("expected 32 bytes, found {}", bytes.len())))?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_text_round_trips() {
        let key = SigningKey::from_seed(&[7; 32]);
        let again = SigningKey::from_file_text(&key.to_file_text()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.key_id(), key.key_id());
    }

    #[test]
    fn public_key_text_round_trips() {
        let public = SigningKey::from_seed(&[9; 32]).public_key();
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
    }

    #[test]
    fn garbage_keys_are_typed_errors() {
        for text in [
            "",
            "scone-signing-key-v1:",
            "scone-signing-key-v1:!!",
            "hello",
        ] {
            assert!(matches!(
                SigningKey::from_file_text(text),
                Err(KeyError::Malformed { .. })
            ));
        }
        for text in ["", "AAAA", "not base64 at all"] {
            assert!(matches!(
                text.parse::<PublicKey>(),
                Err(KeyError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn different_keys_have_different_ids_and_tag_keys() {
        let a = SigningKey::from_seed(&[1; 32]);
        let b = SigningKey::from_seed(&[2; 32]);
        assert_ne!(a.key_id(), b.key_id());
        assert_ne!(a.tag_key(), b.tag_key());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_group_or_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = SigningKey::from_seed(&[8; 32]);
        key.save(&path, false).unwrap();
        assert_eq!(
            SigningKey::load(&path).unwrap().public_key(),
            key.public_key()
        );
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match SigningKey::load(&path) {
                Err(error @ KeyError::TooOpen { mode: found, .. }) => {
                    assert_eq!(found, mode);
                    assert!(error.to_string().contains("chmod 600"), "{error}");
                }
                other => panic!("mode {mode:o}: expected TooOpen, got {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SigningKey::load(&path).is_ok());
        // Owner-only modes other than 0600 are fine too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SigningKey::load(&path).is_ok());
    }

    #[test]
    fn an_oversize_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = SigningKey::from_seed(&[8; 32]);
        key.save(&path, false).unwrap();
        let mut text = key.to_file_text().to_string();
        text.push_str(&" ".repeat(MAX_KEY_FILE_BYTES));
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            SigningKey::load(&path),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn the_key_file_text_is_sized_exactly() {
        let text = SigningKey::from_seed(&[7; 32]).to_file_text();
        assert_eq!(text.len(), KEY_FILE_LEN);
        assert_eq!(text.capacity(), KEY_FILE_LEN);
        assert!(text.ends_with('\n'));
    }
}
