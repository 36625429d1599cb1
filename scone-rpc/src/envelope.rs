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
//! relay or cluster peer that does not know the service's types reads the header and
//! skips the body by its length. `token` is reserved for the cluster's routing token.
//! A reader refuses a version it does not know; fields are only ever added behind a new
//! version.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use scone::ClientId;
use scone::{BundleError, BundleLimits, DecodeError, RejectReason, Scone, SconeBundle, ServiceId};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// SCONEs as they travel: each its own wire encoding, decoded only by whoever needs them,
/// so one malformed SCONE gets a typed refusal instead of failing the whole message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireScones(pub Vec<Bytes>);

/// Why a [`WireScones`] did not decode into a bundle.
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
    /// The wire form of a bundle (no copying: SCONEs share their bytes).
    pub fn encode(bundle: &SconeBundle) -> Self {
        Self(bundle.iter().map(|scone| scone.encoded().clone()).collect())
    }

    /// The wire form of a bundle, taken apart.
    pub fn from_bundle(bundle: SconeBundle) -> Self {
        Self(bundle.into_iter().map(Scone::into_encoded).collect())
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

    /// Decodes every SCONE (at most `max_scone_bytes` each) into a bundle within `limits`.
    pub fn decode(
        self,
        limits: BundleLimits,
        max_scone_bytes: usize,
    ) -> Result<SconeBundle, WireSconesError> {
        self.check_limits(limits)?;
        let mut bundle = SconeBundle::with_limits(limits);
        for bytes in self.0 {
            bundle.insert_new(Scone::decode_with_limit(bytes, max_scone_bytes)?)?;
        }
        Ok(bundle)
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
    /// Reserved for the cluster's routing token.
    #[serde(with = "serde_bytes")]
    pub token: Option<Box<[u8]>>,
    /// The postcard-encoded tarpc request of the service.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
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
    /// Reserved for the cluster's routing token.
    #[serde(with = "serde_bytes")]
    pub token: Option<Box<[u8]>>,
    /// The handler's reply, or why the request was refused.
    pub outcome: Outcome,
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler ran; its postcard-encoded tarpc response.
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request was refused before (or instead of) reaching the handler. Boxed: it is
    /// rare, and a reply travels through several futures, each sized for its largest form.
    Refused(Box<Refusal>),
}

/// Why a request was refused, as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} (service {service}): {detail}", service = self.service.as_ref().map_or("-", ServiceId::as_str))]
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
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalKind::Scone(reason) => write!(f, "scone refused: {reason:?}"),
            RefusalKind::UnsupportedEnvelope => f.write_str("unsupported envelope version"),
            RefusalKind::WrongService => f.write_str("wrong service"),
            RefusalKind::BadRequest => f.write_str("bad request body"),
            RefusalKind::MintFailed => f.write_str("could not mint new state"),
        }
    }
}
