//! The SCONE itself: its fields, its wire encoding and its text form.
//!
//! # Wire format, version 1
//!
//! An encoded SCONE is two postcard values back to back:
//!
//! ```text
//! claims = format:u8 (=1) | key_id:bytes(8) | service:str | endpoint:bytes(16)
//!          | object:varint | status:varint32 | version:varint | issued_at_ms:varint
//!          | expires_at_ms:varint | state_format:varint | sealed:bool | state:bytes
//! seal   = tag:option<bytes(32)> | index:varint32 | siblings:bytes(32 × depth)
//!          | signature:bytes(64)
//! ```
//!
//! (`bytes(n)` is a postcard byte string: a varint length, then the bytes; `varint32` a
//! varint of at most 32 bits.)
//!
//! The complete specification, with every hash, key derivation and canonical-form rule
//! and the test vectors that pin it down, is the crate's `FORMAT.md`
//! ([`format`](mod@crate::format)).
//!
//! The first byte is the format version, read before anything else, so later formats can
//! change everything after it. The signature covers the exact claim bytes as received
//! and their position in the signed batch (through the leaf digest and Merkle path, see
//! [`seal`](crate::seal)), never a re-encoding. The issuer tag lies outside the signature:
//! a keyed hash over the claims digest, index, siblings and signature, made after signing,
//! so a SCONE whose tag is stripped or garbled stays valid (its issuer then checks the
//! signature). `state_format` says how the state is encoded ([`StateFormat`]) and
//! `sealed` whether it is sealed ([`sealed`](crate::sealed)), so a reader never decodes
//! a state in the wrong format. Identify a SCONE by its service, endpoint and version,
//! never by its bytes. The text form is the bytes in base64url without padding.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::to_system_time;
use crate::error::DecodeError;
use crate::ids::{EndpointId, KeyId, ObjectId, ServiceId};
use crate::seal::{varint_len, Digest, Seal};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// The size limit of [`Scone::decode`]; verifiers and bundles may set their own.
pub const DEFAULT_MAX_SCONE_BYTES: usize = 64 * 1024;

/// The status of the operation the SCONE's state belongs to. On the wire, a varint: 0 idle, 1 in progress, 2 completed,
/// 3 failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Status {
    /// No operation under way.
    #[default]
    Idle,
    /// An operation has started and not finished.
    InProgress,
    /// The last operation finished.
    Completed,
    /// The last operation failed.
    Failed,
}

impl Status {
    /// Every status, for parsers and help texts.
    pub const ALL: [Status; 4] = [
        Status::Idle,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
    ];

    /// The lowercase name used by the CLI and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::InProgress => "in-progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?} (idle, in-progress, completed, failed)"))
    }
}

/// How a SCONE's state is encoded, as its claims say (the `state_format` claim): readers
/// decode a state only in the format it names, never guess.
///
/// For a sealed state ([`Scone::is_sealed`]) it names the encoding of the plaintext.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateFormat {
    /// Bytes whose meaning only the service knows (wire value 0): what [`Draft::new`]
    /// mints, and what typed readers refuse.
    ///
    /// [`Draft::new`]: crate::Draft::new
    #[default]
    Opaque,
    /// A postcard encoding (wire value 1): what `#[derive(SconeState)]` types write.
    Postcard,
    /// A UTF-8 JSON document (wire value 2): what `scone mint` writes by default.
    Json,
}

impl StateFormat {
    /// Every format, in wire order.
    pub const ALL: [StateFormat; 3] = [
        StateFormat::Opaque,
        StateFormat::Postcard,
        StateFormat::Json,
    ];

    /// Its number on the wire (a varint in the claims).
    pub const fn code(self) -> u64 {
        match self {
            StateFormat::Opaque => 0,
            StateFormat::Postcard => 1,
            StateFormat::Json => 2,
        }
    }

    /// The format with this wire number; `None` for a number this build does not know.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.code() == code)
    }

    /// The lowercase name used by the CLI and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFormat::Opaque => "opaque",
            StateFormat::Postcard => "postcard",
            StateFormat::Json => "json",
        }
    }
}

impl fmt::Display for StateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StateFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StateFormat::ALL
            .into_iter()
            .find(|format| format.as_str() == s)
            .ok_or_else(|| format!("unknown state format {s:?} (opaque, postcard, json)"))
    }
}

/// The signed fields as they are laid out on the wire, borrowing from the input.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireClaims<'a> {
    pub format: u8,
    pub key_id: KeyId,
    pub service: &'a str,
    pub endpoint: EndpointId,
    pub object: ObjectId,
    pub status: Status,
    pub version: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    /// A [`StateFormat`] code; kept a number here so that an unknown one is a typed error.
    pub state_format: u64,
    pub sealed: bool,
    #[serde(with = "serde_bytes")]
    pub state: &'a [u8],
}

impl WireClaims<'_> {
    /// Its length encoded with the shortest varints, which is how postcard encodes.
    fn canonical_len(&self) -> usize {
        let bytes = |len: usize| varint_len(len as u64) + len;
        // The status's variant index is a varint; this build knows four (one byte).
        1 + bytes(8)
            + bytes(self.service.len())
            + bytes(16)
            + varint_len(self.object.0)
            + 1
            + varint_len(self.version)
            + varint_len(self.issued_at_ms)
            + varint_len(self.expires_at_ms)
            + varint_len(self.state_format)
            + 1
            + bytes(self.state.len())
    }
}

/// A signed state object: a service's state for one endpoint, carried by whoever holds it.
///
/// A `Scone` is immutable and cheap to clone (its bytes are shared). Decoding checks only
/// the shape; [`Verifier::verify`](crate::Verifier::verify) checks the signature, key,
/// service and expiry before anything is handed to a handler. New ones come from a
/// [`Minter`](crate::Minter).
#[derive(Clone)]
pub struct Scone {
    /// The complete encoding, kept so forwarding and re-sending never re-encode.
    encoded: Bytes,
    /// `encoded[..claims_len]` is the claim bytes the leaf digest covers.
    claims_len: usize,
    /// Where the opaque state sits inside `encoded`, so it is stored once.
    state: Range<usize>,
    service: ServiceId,
    endpoint: EndpointId,
    object: ObjectId,
    status: Status,
    version: u64,
    issued_at_ms: u64,
    expires_at_ms: u64,
    key_id: KeyId,
    /// How the state is encoded (of the plaintext, when sealed).
    state_format: StateFormat,
    /// Whether the state is sealed: ciphertext only the service opens.
    sealed: bool,
    seal: Seal,
}

impl Scone {
    /// Decodes a SCONE of at most [`DEFAULT_MAX_SCONE_BYTES`].
    pub fn decode(bytes: impl Into<Bytes>) -> Result<Self, DecodeError> {
        Self::decode_with_limit(bytes, DEFAULT_MAX_SCONE_BYTES)
    }

    /// Decodes a SCONE of at most `limit` bytes. Checks the shape only, not the signature.
    pub fn decode_with_limit(bytes: impl Into<Bytes>, limit: usize) -> Result<Self, DecodeError> {
        let encoded: Bytes = bytes.into();
        match encoded.first() {
            None => return Err(DecodeError::Empty),
            Some(_) if encoded.len() > limit => {
                return Err(DecodeError::TooLarge {
                    size: encoded.len(),
                    limit,
                })
            }
            Some(&format) if format != FORMAT_VERSION => {
                return Err(DecodeError::UnsupportedVersion(format))
            }
            Some(_) => {}
        }
        let (claims, rest) = postcard::take_from_bytes::<WireClaims<'_>>(&encoded)?;
        let claims_len = encoded.len() - rest.len();
        // Postcard also reads overlong varints: refused, so that one SCONE has one encoding.
        if claims_len != claims.canonical_len() {
            return Err(DecodeError::Malformed("claims are not canonically encoded"));
        }
        let state_format = StateFormat::from_code(claims.state_format)
            .ok_or(DecodeError::UnknownStateFormat(claims.state_format))?;
        let seal = Seal::parse(&encoded, claims_len)?;
        let service = ServiceId::interned(claims.service)
            .map_err(|_| DecodeError::Malformed("invalid service id"))?;
        Ok(Self {
            claims_len,
            state: state_range(claims_len, claims.state.len()),
            service,
            endpoint: claims.endpoint,
            object: claims.object,
            status: claims.status,
            version: claims.version,
            issued_at_ms: claims.issued_at_ms,
            expires_at_ms: claims.expires_at_ms,
            key_id: claims.key_id,
            state_format,
            sealed: claims.sealed,
            seal,
            encoded,
        })
    }

    /// Parses the text form (base64url without padding) of a SCONE of at most
    /// [`DEFAULT_MAX_SCONE_BYTES`].
    pub fn from_text(text: &str) -> Result<Self, DecodeError> {
        let text = text.trim();
        // Refuse before decoding: base64 inflates by 4/3, so this bounds the work.
        let limit = DEFAULT_MAX_SCONE_BYTES;
        if text.len() > limit / 3 * 4 + 4 {
            return Err(DecodeError::TooLarge {
                size: text.len() / 4 * 3,
                limit,
            });
        }
        Self::decode(URL_SAFE_NO_PAD.decode(text)?)
    }

    /// The text form: the encoding in base64url without padding.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.encoded)
    }

    /// The wire encoding.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The wire encoding, taking the SCONE apart (no copy, no reference count).
    pub fn into_encoded(self) -> Bytes {
        self.encoded
    }

    /// The same SCONE in bytes of its own. One decoded from a slice of a larger buffer
    /// (say, the received message it came in, decoded without copying) keeps that whole
    /// buffer alive; whatever keeps SCONEs for long, like a cache, should compact them.
    pub fn compacted(self) -> Self {
        Self {
            encoded: Bytes::copy_from_slice(&self.encoded),
            ..self
        }
    }

    /// Size of the wire encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// The format version it was encoded with.
    pub fn format_version(&self) -> u8 {
        self.encoded[0]
    }

    /// The service it belongs to.
    pub fn service(&self) -> &ServiceId {
        &self.service
    }

    /// The endpoint (session) it belongs to.
    pub fn endpoint(&self) -> EndpointId {
        self.endpoint
    }

    /// The server object its state belongs to.
    pub fn object(&self) -> ObjectId {
        self.object
    }

    /// The status of the current operation.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The state version: grows by one each time the state changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When it was minted, milliseconds since the Unix epoch.
    pub fn issued_at_ms(&self) -> u64 {
        self.issued_at_ms
    }

    /// When it expires, milliseconds since the Unix epoch.
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// When it was minted.
    pub fn issued_at(&self) -> SystemTime {
        to_system_time(self.issued_at_ms)
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        to_system_time(self.expires_at_ms)
    }

    /// Whether it has expired at `now_ms` (no skew allowed).
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The ID of the key that signed it.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The state bytes, encoded as [`state_format`](Self::state_format) says (and sealed
    /// if [`is_sealed`](Self::is_sealed)).
    pub fn state(&self) -> &[u8] {
        &self.encoded[self.state.clone()]
    }

    /// Where [`state`](Self::state) sits inside [`encoded`](Self::encoded). The bytes
    /// before it (the other claims) and after it (the signature) are small: a peer that
    /// holds the previous state can be sent those and a delta of the state, rebuild the
    /// encoding, and verify it like any other.
    pub fn state_range(&self) -> Range<usize> {
        self.state.clone()
    }

    /// How the state is encoded; for a sealed state, how the plaintext is.
    pub fn state_format(&self) -> StateFormat {
        self.state_format
    }

    /// Whether the state is sealed ([`sealed`](crate::sealed)): ciphertext that only the
    /// service opens.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Whether it carries an issuer-only tag.
    pub fn has_tag(&self) -> bool {
        self.seal.tag.is_some()
    }

    /// How many SCONEs shared its signature, rounded up to a power of two (1 when alone).
    pub fn batch_size_bound(&self) -> u64 {
        1 << self.seal.depth()
    }

    /// A draft of the next version of this state: same service, endpoint and object,
    /// version + 1, with `state` and this SCONE's status, state format and sealed flag.
    ///
    /// Set the format and flag anew if `state` differs in kind
    /// ([`Draft::with_state_format`](crate::Draft::with_state_format),
    /// [`Draft::with_sealed`](crate::Draft::with_sealed)); a sealing server seals the
    /// successor's state again before minting it, which sets the flag.
    pub fn successor(&self, state: Vec<u8>) -> crate::Draft {
        crate::Draft {
            service: self.service.clone(),
            endpoint: self.endpoint,
            object: self.object,
            status: self.status,
            version: self.version.saturating_add(1),
            ttl: None,
            state_format: self.state_format,
            sealed: self.sealed,
            state,
        }
    }

    pub(crate) fn claims_bytes(&self) -> &[u8] {
        &self.encoded[..self.claims_len]
    }

    pub(crate) fn seal(&self) -> &Seal {
        &self.seal
    }

    /// The digest of the claim bytes, from which the tag and leaf are derived.
    pub(crate) fn claims_digest(&self) -> Digest {
        crate::seal::claims_digest(self.claims_bytes())
    }

    /// Builds a SCONE from an encoding the minter has just produced: the claims are known,
    /// only the seal is read back (a copy-free parse).
    pub(crate) fn from_parts(
        encoded: Bytes,
        claims_len: usize,
        claims: &WireClaims<'_>,
        service: ServiceId,
    ) -> Result<Self, DecodeError> {
        let seal = Seal::parse_own(&encoded, claims_len)?;
        Ok(Self {
            state: state_range(claims_len, claims.state.len()),
            encoded,
            claims_len,
            service,
            endpoint: claims.endpoint,
            object: claims.object,
            status: claims.status,
            version: claims.version,
            issued_at_ms: claims.issued_at_ms,
            expires_at_ms: claims.expires_at_ms,
            key_id: claims.key_id,
            // The minter wrote the code from a `StateFormat`: it is known.
            state_format: StateFormat::from_code(claims.state_format)
                .ok_or(DecodeError::UnknownStateFormat(claims.state_format))?,
            sealed: claims.sealed,
            seal,
        })
    }
}

impl PartialEq for Scone {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for Scone {}

impl fmt::Debug for Scone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scone")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("object", &self.object)
            .field("status", &self.status)
            .field("version", &self.version)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("key_id", &self.key_id)
            .field("state_format", &self.state_format)
            .field("sealed", &self.sealed)
            .field("state_len", &self.state.len())
            .finish()
    }
}

/// Serialized as one byte string (its wire encoding), so a SCONE nests in any serde message.
impl Serialize for Scone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encoded)
    }
}

/// Deserialized from a byte string and decoded with [`Scone::decode`]'s limit.
impl<'de> Deserialize<'de> for Scone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Scone::decode(bytes.into_vec()).map_err(serde::de::Error::custom)
    }
}

/// Where the state sits: it is the last claim, so it ends where the claims end.
pub(crate) fn state_range(claims_len: usize, state_len: usize) -> Range<usize> {
    claims_len - state_len..claims_len
}

/// The ttl of a draft, bounded so `issued_at + ttl` never overflows.
pub(crate) fn expiry(issued_at_ms: u64, ttl: Duration) -> u64 {
    issued_at_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}
