//! Identifiers: the service, endpoint (session), object and key a SCONE carries, and the
//! client that holds it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::InvalidId;

/// Longest service ID accepted, in bytes: names are labels, not payloads.
pub const MAX_SERVICE_ID_LEN: usize = 128;

/// The name of the service a SCONE belongs to (for example `cart` or `billing.v2`).
///
/// A verifier accepts only SCONEs for its own service, and caches key SCONEs by it.
/// Allowed: 1 to 128 ASCII letters, digits and `. _ - / :`. Cloning is cheap.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct ServiceId(Arc<str>);

/// By name; interned IDs are usually the same allocation, which settles it at once.
impl PartialEq for ServiceId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// By name, consistent with `eq`.
impl std::hash::Hash for ServiceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Serialize for ServiceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Deserialized from a string, validated, and interned (see [`ServiceId::interned`]).
impl<'de> Deserialize<'de> for ServiceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ServiceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service id")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ServiceId, E> {
                ServiceId::interned(name).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl ServiceId {
    /// Checks `name` and makes a service ID of it.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidId> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_SERVICE_ID_LEN {
            return Err(InvalidId::ServiceLength(name.len()));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')))
        {
            return Err(InvalidId::ServiceChar(bad));
        }
        Ok(Self(name.into()))
    }

    /// Like [`new`](Self::new), but reuses this thread's last result when the name is the
    /// same: a process decodes SCONEs of only a few services, and this saves an allocation
    /// per decode.
    pub fn interned(name: &str) -> Result<Self, InvalidId> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<ServiceId>> = const { std::cell::RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some(id) if id.as_str() == name => Ok(id.clone()),
                _ => {
                    let id = Self::new(name)?;
                    *last = Some(id.clone());
                    Ok(id)
                }
            }
        })
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceId {
    type Error = InvalidId;
    fn try_from(name: String) -> Result<Self, InvalidId> {
        Self::new(name)
    }
}

impl From<ServiceId> for String {
    fn from(id: ServiceId) -> String {
        id.0.to_string()
    }
}

impl FromStr for ServiceId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        Self::new(s)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceId({:?})", &*self.0)
    }
}

/// Writes bytes as lowercase hex; IDs are shown this way in logs and by the CLI.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// Parses exactly `N` bytes of hex.
fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], InvalidId> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return Err(InvalidId::HexLength {
            expected: 2 * N,
            found: digits.len(),
        });
    }
    let nibble = |c: u8| -> Result<u8, InvalidId> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(InvalidId::HexChar(c as char))
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(out)
}

/// Defines a fixed-size identifier shown and parsed as lowercase hex, carried on the wire
/// as a byte string.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(#[serde(with = "serde_bytes")] [u8; $len]);

        impl $name {
            /// The ID with these bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The ID's bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                parse_hex(s).map(Self)
            }
        }
    };
}

/// A fresh random 16-byte value from the operating system's generator.
fn random_16() -> Result<[u8; 16], getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

hex_id!(
    /// The endpoint (client session) a SCONE belongs to: 16 random bytes, shown as hex.
    ///
    /// The server picks it when it starts a session; it stays the same across the
    /// session's versions, so caches and replicas can tell a newer version from another
    /// session.
    EndpointId,
    16
);

impl EndpointId {
    /// A fresh random endpoint ID.
    pub fn random() -> Result<Self, getrandom::Error> {
        random_16().map(Self)
    }
}

hex_id!(
    /// Identifies a client across calls and sessions: 16 random bytes chosen by the client.
    ///
    /// Relays key the SCONEs they hold for thin clients by (client ID, service ID).
    ClientId,
    16
);

impl ClientId {
    /// A fresh random client ID.
    pub fn random() -> Result<Self, getrandom::Error> {
        random_16().map(Self)
    }
}

/// The server-side object a SCONE's state belongs to, when one service hosts several.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct ObjectId(pub u64);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

hex_id!(
    /// Names a signing key: the first 8 bytes of blake3 in key-derivation mode over its
    /// 32-byte public key, with the context `scone 2026-11-21 key id v1`
    /// (`blake3::derive_key(context, public_key)`; see the crate's [`format`](mod@crate::format)).
    ///
    /// Verifiers look the public key up by this ID, so keys can rotate while older SCONEs
    /// stay verifiable until they expire.
    KeyId,
    8
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_are_checked() {
        assert!(ServiceId::new("cart.v2/eu-west:1").is_ok());
        assert_eq!(ServiceId::new(""), Err(InvalidId::ServiceLength(0)));
        assert_eq!(ServiceId::new("a b"), Err(InvalidId::ServiceChar(' ')));
        assert_eq!(
            ServiceId::new("x".repeat(129)),
            Err(InvalidId::ServiceLength(129))
        );
    }

    #[test]
    fn hex_ids_round_trip_and_reject_garbage() {
        let id = EndpointId::from_bytes(*b"0123456789abcdef");
        assert_eq!(id.to_string().parse::<EndpointId>(), Ok(id));
        assert!(matches!(
            "zz".repeat(16).parse::<EndpointId>(),
            Err(InvalidId::HexChar('z'))
        ));
        assert!(matches!(
            "00".parse::<KeyId>(),
            Err(InvalidId::HexLength {
                expected: 16,
                found: 2
            })
        ));
    }
}
