//! Signing and public keys, their key IDs, text forms and key files.
//!
//! A service holds a [`SigningKey`]; everyone else (clients, relays, peers) holds the
//! [`PublicKey`]. A signing key also derives the service's private *tag key*, so a server
//! can recognise its own SCONEs with one keyed blake3 hash instead of a signature check.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
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
        Zeroizing::new(format!(
            "{KEY_FILE_PREFIX}{}\n",
            URL_SAFE_NO_PAD.encode(self.signing.to_bytes())
        ))
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
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|e| malformed(&format!("bad base64url ({e})")))?,
        );
        let seed: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed(&format!("expected 32 key bytes, found {}", bytes.len())))?;
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
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::from_file_text(&text)
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
}
