//! The link secret: 32 random bytes every peer shares, read as hex or base64, never
//! printed, and wiped from memory when dropped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

/// The key that proves a peer belongs (see [`connect`](super::connect)): 32 random bytes,
/// written as 64 hex digits or in base64 (standard or URL-safe, padded or not). Make one
/// with `head -c 32 /dev/urandom | base64`, or [`generate`](Self::generate).
///
/// Its `Debug` never shows the bytes, and they are zeroed when it is dropped (a clone is
/// a second copy, zeroed on its own drop); the text and bytes that [`load`](Self::load)
/// and `parse` read them through are zeroed too, best effort.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret([u8; 32]);

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkSecretError {
    /// The secret's file could not be read.
    #[error("could not read the secret file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not 32 bytes in hex or base64.
    #[error("the secret is not 32 bytes in hex or base64")]
    Malformed,
}

impl LinkSecret {
    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random secret.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut secret = Self([0; 32]);
        getrandom::fill(&mut secret.0)?;
        Ok(secret)
    }

    /// Reads the secret from the file at `path` (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Self, LinkSecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| LinkSecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        Zeroizing::new(text).parse()
    }

    /// The key of the handshake's MACs.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for LinkSecret {
    type Err = LinkSecretError;

    /// Parses 64 hex digits (either case) or base64 (standard or URL-safe, padded or
    /// not); surrounding whitespace is ignored.
    fn from_str(text: &str) -> Result<Self, LinkSecretError> {
        let text = text.trim();
        let decoded: Option<Zeroizing<Vec<u8>>> =
            if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                (0..32)
                    .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>()
                    .map(Zeroizing::new)
            } else {
                use base64::engine::general_purpose::{
                    STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
                };
                [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(text).ok())
                    .map(Zeroizing::new)
            };
        decoded
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .map(Self)
            .ok_or(LinkSecretError::Malformed)
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(…)")
    }
}

impl Drop for LinkSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_forms_parse_and_others_do_not() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        for text in [hex.clone(), hex.to_uppercase(), b64, format!("{url}\n")] {
            assert_eq!(text.parse::<LinkSecret>().unwrap().0, bytes, "{text}");
        }
        for bad in ["", "abcd", &hex[..62], "!!"] {
            assert!(matches!(
                bad.parse::<LinkSecret>(),
                Err(LinkSecretError::Malformed)
            ));
        }
        assert!(!format!("{:?}", LinkSecret(bytes)).contains(&hex[..4]));
    }

    #[test]
    fn load_reads_a_file_and_names_one_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(
            LinkSecret::load(&path).unwrap(),
            LinkSecret::from_bytes([0xab; 32])
        );
        std::fs::remove_file(&path).unwrap();
        match LinkSecret::load(&path) {
            Err(LinkSecretError::Read { path: named, .. }) => assert_eq!(named, path),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(
            LinkSecret::generate().unwrap(),
            LinkSecret::generate().unwrap()
        );
    }
}
