//! The typed errors of the crate, and the compact reason code that travels on the wire.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, ServiceId};

/// An identifier that does not meet its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// A service ID must be 1 to 128 bytes long.
    #[error("service id must be 1 to 128 bytes long, not {0}")]
    ServiceLength(usize),
    /// A service ID holds a character outside `A-Z a-z 0-9 . _ - / :`.
    #[error("service id may not contain {0:?} (allowed: letters, digits and . _ - / :)")]
    ServiceChar(char),
    /// A hex ID has the wrong number of digits.
    #[error("expected {expected} hex digits, found {found}")]
    HexLength {
        /// Digits the ID needs.
        expected: usize,
        /// Digits given.
        found: usize,
    },
    /// A hex ID holds a non-hex character.
    #[error("{0:?} is not a hex digit")]
    HexChar(char),
}

/// Bytes or text that are not a SCONE this build can read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("scone is empty")]
    Empty,
    /// The first byte names a format this build does not know.
    #[error("unsupported scone format version {0} (this build reads version {v})", v = crate::FORMAT_VERSION)]
    UnsupportedVersion(u8),
    /// Larger than the limit in force; checked before anything is parsed.
    #[error("scone is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The bytes do not parse as a SCONE.
    #[error("malformed scone: {0}")]
    Malformed(&'static str),
    /// The claims name a state format this build does not know
    /// ([`StateFormat`](crate::StateFormat)): its state could only be misread.
    #[error("unknown state format {0} in the scone's claims")]
    UnknownStateFormat(u64),
    /// The postcard decoder rejected the bytes.
    #[error("malformed scone")]
    Postcard(#[from] postcard::Error),
    /// The text form is not base64url.
    #[error("scone text is not base64url")]
    Text(#[from] base64::DecodeError),
}

/// Why a SCONE was refused; every failure of [`Verifier::verify`](crate::Verifier::verify).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// It could not be decoded (malformed, unsupported version, too large).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Signed with a key the verifier does not trust.
    #[error("scone is signed with unknown key {0}")]
    UnknownKey(KeyId),
    /// Signed with a key the verifier trusts, but only for other services: one service's
    /// key may not vouch for another service's state.
    #[error("scone for service {service} is signed with key {key_id}, which is not trusted for that service")]
    KeyNotForService {
        /// The key that signed it.
        key_id: KeyId,
        /// The service the SCONE names.
        service: ServiceId,
    },
    /// The signature does not match the contents: forged or tampered with.
    #[error("scone signature does not verify (forged or tampered)")]
    BadSignature,
    /// Past its expiry (allowing for clock skew).
    #[error("scone expired at {expires_at_ms} ms, now is {now_ms} ms")]
    Expired {
        /// When it expired, milliseconds since the epoch.
        expires_at_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// Issued further in the future than the allowed clock skew.
    #[error("scone is issued at {issued_at_ms} ms, in the future (now is {now_ms} ms)")]
    NotYetValid {
        /// Its issue time, milliseconds since the epoch.
        issued_at_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// Addressed to another service than the one verifying.
    #[error("scone is for service {found}, expected {expected}")]
    WrongService {
        /// The verifier's service.
        expected: ServiceId,
        /// The service the SCONE names.
        found: ServiceId,
    },
    /// Valid for longer (from issue to expiry) than the verifier's
    /// [`max_ttl`](crate::VerifierConfig::max_ttl) allows.
    #[error("scone is valid for {lifetime_ms} ms, longer than the {max_ttl_ms} ms accepted")]
    LifetimeTooLong {
        /// Its expiry minus its issue time, in milliseconds.
        lifetime_ms: u64,
        /// The longest lifetime accepted, in milliseconds.
        max_ttl_ms: u64,
    },
}

/// The reason a SCONE was refused, as a small code that can travel in an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not parseable.
    Malformed,
    /// A format version this build does not read.
    UnsupportedVersion,
    /// Over a size limit.
    TooLarge,
    /// Signed by a key that is not trusted.
    UnknownKey,
    /// Forged or tampered with.
    BadSignature,
    /// Expired.
    Expired,
    /// Issued in the future.
    NotYetValid,
    /// For another service.
    WrongService,
    /// An older version of a session than one already issued or seen (a replay or a
    /// rollback), refused by a replay guard.
    Stale,
    /// Valid for longer than the verifier accepts (its issuer's TTL is over the verifier's
    /// limit): a configuration mismatch, which a fresh SCONE from the same issuer repeats.
    LifetimeTooLong,
}

impl RejectReason {
    /// The stable code for this reason, in kebab case (`expired`, `bad-signature`): what
    /// logs, the CLI and refusals print, and what scripts may match on.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::UnsupportedVersion => "unsupported-version",
            RejectReason::TooLarge => "too-large",
            RejectReason::UnknownKey => "unknown-key",
            RejectReason::BadSignature => "bad-signature",
            RejectReason::Expired => "expired",
            RejectReason::NotYetValid => "not-yet-valid",
            RejectReason::WrongService => "wrong-service",
            RejectReason::Stale => "stale",
            RejectReason::LifetimeTooLong => "lifetime-too-long",
        }
    }

    /// Every reason, in wire order.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::Malformed,
        RejectReason::UnsupportedVersion,
        RejectReason::TooLarge,
        RejectReason::UnknownKey,
        RejectReason::BadSignature,
        RejectReason::Expired,
        RejectReason::NotYetValid,
        RejectReason::WrongService,
        RejectReason::Stale,
        RejectReason::LifetimeTooLong,
    ];

    /// The reason with this [`code`](Self::code), if any.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl VerifyError {
    /// The wire code for this error.
    pub fn reason(&self) -> RejectReason {
        match self {
            VerifyError::Decode(DecodeError::UnsupportedVersion(_)) => {
                RejectReason::UnsupportedVersion
            }
            VerifyError::Decode(DecodeError::TooLarge { .. }) => RejectReason::TooLarge,
            VerifyError::Decode(_) => RejectReason::Malformed,
            // Not trusted for this service is not trusted: the client's remedy is the same.
            VerifyError::UnknownKey(_) | VerifyError::KeyNotForService { .. } => {
                RejectReason::UnknownKey
            }
            VerifyError::BadSignature => RejectReason::BadSignature,
            VerifyError::Expired { .. } => RejectReason::Expired,
            VerifyError::NotYetValid { .. } => RejectReason::NotYetValid,
            VerifyError::WrongService { .. } => RejectReason::WrongService,
            VerifyError::LifetimeTooLong { .. } => RejectReason::LifetimeTooLong,
        }
    }
}

/// A failure to mint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The encoded SCONE would exceed the limit.
    #[error("minted scone would be {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The minter's limit.
        limit: usize,
    },
    /// A batch larger than one signature may cover.
    #[error("a batch holds at most {limit} scones, not {size}")]
    BatchTooLarge {
        /// Drafts in the batch.
        size: usize,
        /// The most one signature covers.
        limit: usize,
    },
    /// The encoder failed.
    #[error("could not encode scone")]
    Encode(#[from] postcard::Error),
    /// The minted bytes did not read back as the SCONE just built (a bug, never expected).
    #[error("minted scone does not decode; this is a bug")]
    Inconsistent,
}

/// A failure to make, read or write a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("could not access key file {path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file exists and overwriting was not asked for.
    #[error("{0} already exists (use --force to overwrite it)")]
    Exists(PathBuf),
    /// The text is not a key of the expected kind.
    #[error("not a valid {kind}: {why}")]
    Malformed {
        /// What was expected: "signing key file" or "public key".
        kind: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The operating system's random generator failed.
    #[error("no randomness available")]
    Random(#[source] getrandom::Error),
    /// A signing key file that users other than its owner may read: the secret may have
    /// leaked, so it is refused, as ssh refuses such a private key.
    #[error(
        "key file {path} is readable by group or others (mode {mode:03o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A different public key with the same key ID is trusted already. Key IDs are short
    /// hashes, so this means a collision (or one made on purpose): trusting the new key
    /// would silently replace, or share a name with, the one trusted before.
    #[error("a different public key with key id {0} is trusted already")]
    KeyIdCollision(KeyId),
}

/// A bundle that breaks its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// More SCONEs than allowed.
    #[error("a bundle holds at most {limit} scones")]
    TooManyScones {
        /// The limit.
        limit: usize,
    },
    /// More bytes than allowed.
    #[error("bundle would be {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The bundle's size with the new SCONE.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Two SCONEs for one service in a decoded bundle.
    #[error("bundle holds two scones for service {0}")]
    DuplicateService(ServiceId),
}

/// A failure to use the task-local context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The code is not running inside [`context::scope`](crate::context::scope).
    #[error("no scone context: this code is not running inside a request scope")]
    NoContext,
    /// Called from inside a closure given to [`context::with`](crate::context::with).
    #[error("the scone context is already borrowed by an enclosing call")]
    Reentrant,
    /// A forwarded SCONE does not fit the outgoing bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

#[cfg(test)]
mod tests {
    use super::RejectReason;

    #[test]
    fn reason_codes_are_distinct_kebab_case_and_parse_back() {
        let mut codes: Vec<&str> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        for (reason, code) in RejectReason::ALL.iter().zip(&codes) {
            assert_eq!(RejectReason::from_code(code), Some(*reason));
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{code}"
            );
        }
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        assert_eq!(RejectReason::from_code("nonsense"), None);
    }

    #[test]
    fn all_lists_every_reason_in_wire_order() {
        let on_the_wire: Vec<RejectReason> = (0u8..64)
            .map_while(|index| postcard::from_bytes(&[index]).ok())
            .collect();
        assert_eq!(on_the_wire, RejectReason::ALL);
    }
}
