//! The mesh secret: 32 random bytes every relay of one mesh shares, read as hex or base64.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine;

use crate::error::ConfigError;

/// The key that proves a peer belongs to the mesh (`--mesh-secret-file`): 32 random
/// bytes, written as 64 hex digits or in base64 (standard or URL-safe, padded or not).
/// Make one with `head -c 32 /dev/urandom | base64`. Never printed: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshSecret([u8; 32]);

impl MeshSecret {
    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random secret.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Reads the secret from the file at `path` (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        text.parse()
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for MeshSecret {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        decoded
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or(ConfigError::MeshSecret)
    }
}

impl fmt::Debug for MeshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MeshSecret(…)")
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
            assert_eq!(text.parse::<MeshSecret>().unwrap().0, bytes, "{text}");
        }
        for bad in ["", "abcd", &hex[..62], "!!"] {
            assert!(bad.parse::<MeshSecret>().is_err(), "{bad}");
        }
        assert!(!format!("{:?}", MeshSecret(bytes)).contains(&hex[..4]));
    }
}
