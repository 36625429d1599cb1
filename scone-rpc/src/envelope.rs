//! The envelope every request and reply travels in: a header anyone can read, and a body
//! only the service understands.
//!
//! # Wire format, envelope version 1
//!
//! Frames are length-delimited (4-byte big-endian length, then the frame). Each frame is a
//! postcard-encoded tarpc message, `ClientMessage<RequestEnvelope>` from client to server
//! and `Response<ResponseEnvelope>` back; tarpc's own fields (request ID, deadline, trace
//! context) come first. The envelopes are:
//!
//! ```text
//! RequestEnvelope  = version:u8 (=1) | client:[u8;16] | service:str | scones:seq<bytes>
//!                    | token:option<bytes> | body:bytes
//! ResponseEnvelope = version:u8 (=1) | scones:seq<bytes> | token:option<bytes> | outcome
//! outcome          = 0:varint body:bytes                        (the handler's reply)
//!                  | 1:varint kind:varint service:option<str> detail:str   (refused)
//! ```
//!
//! Each SCONE in `scones` is its own wire encoding (see [`scone::scone`]) as a byte
//! string, decoded only by whoever needs it: the server refuses a malformed SCONE with a
//! typed reply instead of failing the whole message. The body is the postcard encoding of the service's tarpc request or response
//! enum, carried as a length-prefixed byte string: postcard is not self-describing, so a
//! relay that does not know the service's types reads the header and skips the body by
//! its length. `token` is a session's routing token, opaque here: a server whose
//! placement keeps sessions (`server::placement`) gives one in its reply, and the client
//! sends it back instead of the SCONE; otherwise it is empty. Refusal kinds 5
//! (`session-unavailable`), 6 (`not-replicated`), 7 (`superseded`) and 8 (`busy`) come
//! from such a placement.
//! A reader refuses a version it does not know; fields are only ever added behind a new
//! version. A message with more than [`MAX_WIRE_SCONES`] SCONEs does not decode (fewer but
//! over the receiver's bundle limits earn a typed refusal instead).

use std::fmt;

use bytes::Bytes;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::codec::shared_bytes::{self, Shared};

pub use scone::ClientId;
use scone::{BundleError, BundleLimits, DecodeError, RejectReason, Scone, SconeBundle, ServiceId};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Most SCONEs one envelope may carry on the wire, whatever the bundle limits: a frame
/// with more does not decode (a bound on what a hostile frame makes the reader allocate).
pub const MAX_WIRE_SCONES: usize = 256;

/// SCONEs as they travel: each its own wire encoding, decoded only by whoever needs them,
/// so one malformed SCONE gets a typed refusal instead of failing the whole message.
///
/// A message usually carries one SCONE, held inline: no allocation for the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireScones(SmallVec<[Bytes; 1]>);

impl Serialize for WireScones {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for WireScones {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SequenceVisitor;

        impl<'de> Visitor<'de> for SequenceVisitor {
            type Value = WireScones;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of encoded scones")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireScones, A::Error> {
                // Element by element, never trusting the length prefix to reserve.
                let mut scones = SmallVec::new();
                while let Some(Shared(encoded)) = seq.next_element::<Shared>()? {
                    if scones.len() == MAX_WIRE_SCONES {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_WIRE_SCONES} scones in one message"
                        )));
                    }
                    scones.push(encoded);
                }
                Ok(WireScones(scones))
            }
        }

        deserializer.deserialize_seq(SequenceVisitor)
    }
}

impl From<Vec<Bytes>> for WireScones {
    fn from(encoded: Vec<Bytes>) -> Self {
        Self(SmallVec::from_vec(encoded))
    }
}

impl FromIterator<Bytes> for WireScones {
    fn from_iter<I: IntoIterator<Item = Bytes>>(encoded: I) -> Self {
        Self(encoded.into_iter().collect())
    }
}

/// Why a [`WireScones`] did not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireSconesError {
    /// One SCONE did not decode.
    #[error(transparent)]
    Scone(#[from] DecodeError),
    /// The set breaks the bundle limits or names a service twice.
    #[error(transparent)]
    Bundle(#[from] scone::BundleError),
}

impl WireSconesError {
    /// The refusal this failure earns.
    pub fn refusal_kind(&self) -> RefusalKind {
        match self {
            WireSconesError::Scone(DecodeError::UnsupportedVersion(_)) => {
                RefusalKind::Scone(RejectReason::UnsupportedVersion)
            }
            WireSconesError::Scone(DecodeError::TooLarge { .. }) => {
                RefusalKind::Scone(RejectReason::TooLarge)
            }
            WireSconesError::Scone(_) => RefusalKind::Scone(RejectReason::Malformed),
            WireSconesError::Bundle(_) => RefusalKind::BadRequest,
        }
    }
}

impl WireScones {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The wire form of a bundle (no copying: SCONEs share their bytes).
    pub fn encode(bundle: &SconeBundle) -> Self {
        bundle.iter().map(|scone| scone.encoded().clone()).collect()
    }

    /// The wire form of a bundle, taken apart.
    pub fn from_bundle(bundle: SconeBundle) -> Self {
        bundle.into_iter().map(Scone::into_encoded).collect()
    }

    /// Adds one SCONE's encoding.
    pub fn push(&mut self, encoded: Bytes) {
        self.0.push(encoded);
    }

    /// The encodings, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Bytes> {
        self.0.iter()
    }

    /// The encodings, taken out.
    pub fn into_encoded(self) -> impl ExactSizeIterator<Item = Bytes> {
        self.0.into_iter()
    }

    /// How many SCONEs it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the count and total size against `limits`, before anything is decoded.
    pub fn check_limits(&self, limits: BundleLimits) -> Result<(), BundleError> {
        if self.0.len() > limits.max_scones {
            return Err(BundleError::TooManyScones {
                limit: limits.max_scones,
            });
        }
        let size = self.0.iter().map(Bytes::len).sum();
        if size > limits.max_bytes {
            return Err(BundleError::TooLarge {
                size,
                limit: limits.max_bytes,
            });
        }
        Ok(())
    }

    /// Decodes every SCONE (at most `max_scone_bytes` each), checking the set against
    /// `limits` and refusing two SCONEs for one service. All or nothing: one bad SCONE
    /// fails the whole set.
    pub fn decode(
        self,
        limits: BundleLimits,
        max_scone_bytes: usize,
    ) -> Result<impl ExactSizeIterator<Item = Scone>, WireSconesError> {
        self.check_limits(limits)?;
        // Usually one or two: on the stack.
        let mut scones = SmallVec::<[Scone; 2]>::new();
        for bytes in self.0 {
            let scone = Scone::decode_with_limit(bytes, max_scone_bytes)?;
            if scones.iter().any(|seen| seen.service() == scone.service()) {
                return Err(BundleError::DuplicateService(scone.service().clone()).into());
            }
            scones.push(scone);
        }
        Ok(scones.into_iter())
    }
}

/// A request: who calls which service, with which SCONEs, and the service's request body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Envelope version, [`ENVELOPE_VERSION`].
    pub version: u8,
    /// The calling client.
    pub client: ClientId,
    /// The service called.
    pub service: ServiceId,
    /// The SCONEs entrusted to the client: the called service's, and its back-ends'.
    pub scones: WireScones,
    /// The routing token of the session, from the last reply, for a server whose
    /// placement keeps sessions (see `server::placement`); `None` when the client holds
    /// its SCONEs.
    #[serde(with = "serde_bytes")]
    pub token: Option<Box<[u8]>>,
    /// The postcard-encoded tarpc request of the service.
    #[serde(with = "shared_bytes")]
    pub body: Bytes,
}

impl tarpc::RequestName for RequestEnvelope {
    fn name(&self) -> &str {
        self.service.as_str()
    }
}

/// A reply: new SCONEs for the caller to keep, and the handler's reply or a refusal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// Envelope version, [`ENVELOPE_VERSION`].
    pub version: u8,
    /// SCONEs minted for changed state, and back-ends' SCONEs passed through.
    pub scones: WireScones,
    /// The session's routing token from the server's placement, to send with the next
    /// request (see `server::placement`); `None` when the client holds its SCONEs.
    #[serde(with = "serde_bytes")]
    pub token: Option<Box<[u8]>>,
    /// The handler's reply, or why the request was refused.
    pub outcome: Outcome,
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler ran; its postcard-encoded tarpc response.
    Reply(#[serde(with = "shared_bytes")] Bytes),
    /// The request was refused before (or instead of) reaching the handler. Boxed: it is
    /// rare, and a reply travels through several futures, each sized for its largest form.
    Refused(Box<Refusal>),
}

/// Why a request was refused, as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} by {service}: {detail}", service = self.service.as_ref().map_or("the server", ServiceId::as_str))]
pub struct Refusal {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// The service whose SCONE or request was refused.
    pub service: Option<ServiceId>,
    /// A human-readable explanation.
    pub detail: String,
}

/// The kinds of refusal; the stable part of a [`Refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefusalKind {
    /// A SCONE for the called service failed verification.
    Scone(RejectReason),
    /// The envelope's version is not one the server reads.
    UnsupportedEnvelope,
    /// The request was addressed to another service than the server's.
    WrongService,
    /// The body is not a request of this service.
    BadRequest,
    /// The new state could not be minted (for example, it is over the size limit).
    MintFailed,
    /// The session a routing token names is held by no node that answered (a placement
    /// that keeps state on servers; see `server::placement`).
    SessionUnavailable,
    /// The new state reached fewer replicas than required, so the change was not made
    /// durable and no reply was given for it.
    NotReplicated,
    /// The request was served from an older version of its session than one held
    /// elsewhere (a placement that keeps sessions on servers): its change was not made.
    /// An earlier attempt of the same call may be what made the newer version.
    Superseded,
    /// The session stayed locked by other requests past this request's deadline (a
    /// placement that runs one request of a session at a time): the call did not run.
    Busy,
}

impl RefusalKind {
    /// The stable code of this kind, in kebab case: `scone-` and the reason's code for a
    /// refused SCONE (`scone-expired`, `scone-stale`), else `unsupported-envelope`,
    /// `wrong-service`, `bad-request`, `mint-failed`, `session-unavailable`,
    /// `not-replicated`, `superseded` or `busy`. What logs print and scripts match.
    pub fn code(self) -> std::borrow::Cow<'static, str> {
        match self {
            RefusalKind::Scone(reason) => format!("scone-{}", reason.code()).into(),
            RefusalKind::UnsupportedEnvelope => "unsupported-envelope".into(),
            RefusalKind::WrongService => "wrong-service".into(),
            RefusalKind::BadRequest => "bad-request".into(),
            RefusalKind::MintFailed => "mint-failed".into(),
            RefusalKind::SessionUnavailable => "session-unavailable".into(),
            RefusalKind::NotReplicated => "not-replicated".into(),
            RefusalKind::Superseded => "superseded".into(),
            RefusalKind::Busy => "busy".into(),
        }
    }

    /// The kind with this [`code`](Self::code), if any.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "unsupported-envelope" => Some(RefusalKind::UnsupportedEnvelope),
            "wrong-service" => Some(RefusalKind::WrongService),
            "bad-request" => Some(RefusalKind::BadRequest),
            "mint-failed" => Some(RefusalKind::MintFailed),
            "session-unavailable" => Some(RefusalKind::SessionUnavailable),
            "not-replicated" => Some(RefusalKind::NotReplicated),
            "superseded" => Some(RefusalKind::Superseded),
            "busy" => Some(RefusalKind::Busy),
            _ => RejectReason::from_code(code.strip_prefix("scone-")?).map(RefusalKind::Scone),
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            RefusalKind::Scone(_) => "the scone was refused",
            RefusalKind::UnsupportedEnvelope => "unsupported envelope version",
            RefusalKind::WrongService => "wrong service",
            RefusalKind::BadRequest => "bad request",
            RefusalKind::MintFailed => "could not mint the new state",
            RefusalKind::SessionUnavailable => "the session is unavailable",
            RefusalKind::NotReplicated => "the new state was not replicated",
            RefusalKind::Superseded => "a newer version of the session exists",
            RefusalKind::Busy => "the session is busy",
        };
        write!(f, "{what} [{}]", self.code())
    }
}

#[cfg(test)]
mod tests {
    use scone::{Draft, EndpointId, Minter, SigningKey};

    use super::*;

    fn encoded(service: &str, session: u8) -> Bytes {
        let draft = Draft::new(
            ServiceId::new(service).unwrap(),
            EndpointId::from_bytes([session; 16]),
        );
        Minter::new(SigningKey::from_seed(&[1; 32]))
            .mint(draft)
            .unwrap()
            .into_encoded()
    }

    #[test]
    fn refusal_codes_parse_back_and_show_in_the_text() {
        let kinds = RejectReason::ALL
            .into_iter()
            .map(RefusalKind::Scone)
            .chain([
                RefusalKind::UnsupportedEnvelope,
                RefusalKind::WrongService,
                RefusalKind::BadRequest,
                RefusalKind::MintFailed,
                RefusalKind::SessionUnavailable,
                RefusalKind::NotReplicated,
                RefusalKind::Superseded,
                RefusalKind::Busy,
            ]);
        for kind in kinds {
            assert_eq!(RefusalKind::from_code(&kind.code()), Some(kind));
            assert!(kind.to_string().ends_with(&format!("[{}]", kind.code())));
        }
        let refusal = Refusal {
            kind: RefusalKind::Scone(RejectReason::Expired),
            service: Some(ServiceId::new("cart").unwrap()),
            detail: "expired 3 s ago".into(),
        };
        assert_eq!(
            refusal.to_string(),
            "the scone was refused [scone-expired] by cart: expired 3 s ago"
        );
    }

    #[test]
    fn wire_scones_round_trip_through_postcard() {
        let scones: WireScones = [encoded("cart", 1), encoded("ledger", 1)]
            .into_iter()
            .collect();
        let bytes = postcard::to_stdvec(&scones).unwrap();
        let back: WireScones = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, scones);
        let services: Vec<String> = back
            .decode(BundleLimits::default(), scone::DEFAULT_MAX_SCONE_BYTES)
            .unwrap()
            .map(|scone| scone.service().to_string())
            .collect();
        assert_eq!(services, ["cart", "ledger"]);
    }

    #[test]
    fn two_scones_for_one_service_fail_the_whole_set() {
        let scones = WireScones::from(vec![encoded("cart", 1), encoded("cart", 2)]);
        let refused = scones.decode(BundleLimits::default(), scone::DEFAULT_MAX_SCONE_BYTES);
        assert!(matches!(
            refused.map(|_| ()),
            Err(WireSconesError::Bundle(BundleError::DuplicateService(_)))
        ));
    }

    #[test]
    fn a_message_with_too_many_scones_does_not_decode() {
        // Empty byte strings: a hostile frame packs the most entries into the fewest bytes.
        let many = WireScones::from(vec![Bytes::new(); MAX_WIRE_SCONES + 1]);
        let bytes = postcard::to_stdvec(&many).unwrap();
        assert!(postcard::from_bytes::<WireScones>(&bytes).is_err());
        let most = WireScones::from(vec![Bytes::new(); MAX_WIRE_SCONES]);
        let bytes = postcard::to_stdvec(&most).unwrap();
        assert_eq!(
            postcard::from_bytes::<WireScones>(&bytes).unwrap().len(),
            MAX_WIRE_SCONES
        );
    }
}
