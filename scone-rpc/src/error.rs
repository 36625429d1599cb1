//! Errors of the RPC layer, and how a refusal survives tarpc's error type.
//!
//! tarpc's generated clients return `tarpc::client::RpcError`, which has no room for our
//! types. A refusal therefore travels as `RpcError::Server` with `PermissionDenied`
//! (SCONE refused, wrong service) or `InvalidData` (anything else), and its detail starts
//! with a machine-readable code that [`refusal`] turns back into a [`RefusalKind`].

use tarpc::client::RpcError;

use crate::envelope::RefusalKind;

/// The start of a refusal's detail text; the kind's code follows, then `]`.
pub(crate) const REFUSAL_PREFIX: &str = "scone-refusal[";

/// Why the server refused a call, if the error is a refusal.
///
/// ```
/// # use scone_rpc::{refusal, RefusalKind};
/// # use scone::RejectReason;
/// # fn check(error: tarpc::client::RpcError) {
/// if refusal(&error) == Some(RefusalKind::Scone(RejectReason::Expired)) {
///     // Start a new session.
/// }
/// # }
/// ```
pub fn refusal(error: &RpcError) -> Option<RefusalKind> {
    let RpcError::Server(server_error) = error else {
        return None;
    };
    let code = server_error.detail.strip_prefix(REFUSAL_PREFIX)?;
    RefusalKind::from_code(code.split(']').next()?)
}

/// A failed call, displayed for people: a refusal shows its kind, code, service and
/// reason, where tarpc's own error shows only "the server aborted request processing".
///
/// Generated tarpc clients return `tarpc::client::RpcError`, whose text is fixed; convert
/// with `?` or `CallError::from` where a call's error is shown or logged:
///
/// ```
/// # use scone_rpc::CallError;
/// # async fn call() -> Result<u64, tarpc::client::RpcError> { Ok(1) }
/// # async fn run() -> Result<(), CallError> {
/// let hits = call().await?; // a refusal now reads "the scone was refused [scone-expired] by ..."
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server refused the call.
    #[error("{message}")]
    Refused {
        /// The kind of refusal.
        kind: RefusalKind,
        /// The refusal as text: kind, code, service and reason.
        message: String,
    },
    /// Anything else: the connection, a deadline, an error on this side.
    #[error(transparent)]
    Rpc(RpcError),
}

impl CallError {
    /// The kind of refusal, if the server refused the call.
    pub fn refusal(&self) -> Option<RefusalKind> {
        match self {
            CallError::Refused { kind, .. } => Some(*kind),
            CallError::Rpc(_) => None,
        }
    }

    /// Whether sending the call again, to this server or another of the service, is
    /// safe, risky or pointless (see [`retry_advice`]).
    pub fn retry_advice(&self) -> RetryAdvice {
        match self {
            CallError::Refused { kind, .. } => advice_for_refusal(*kind),
            CallError::Rpc(error) => retry_advice(error),
        }
    }
}

/// What a failed call says about sending it again, for clients that fail over between
/// servers (a cluster's nodes, a service's replicas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAdvice {
    /// The call did not run: no handler ran, or none of its state was kept. Send it
    /// again, to another server if this one is down or not the one to ask.
    Safe,
    /// The call may have run (the connection was lost or the deadline passed after it
    /// left, or the server failed after its handler ran): send it again only if it is
    /// idempotent, or after reading the state to see whether it took effect.
    MayHaveRun,
    /// Sending the same call again gets the same answer anywhere (its SCONE is refused,
    /// its body does not decode): fix the call, or start a new session.
    Pointless,
}

/// What `error`, from a call through a SCONE client, says about sending the call again.
///
/// | error | advice |
/// |---|---|
/// | the request could not be sent (`RpcError::Send`) | [`Safe`](RetryAdvice::Safe), or the [`ClientError`]'s own advice |
/// | refused before the handler ran: `wrong-service`, `unsupported-envelope`, `session-unavailable`, `busy` | [`Safe`](RetryAdvice::Safe) |
/// | connection lost (`Shutdown`, `Channel`), `DeadlineExceeded`, any other server error | [`MayHaveRun`](RetryAdvice::MayHaveRun) |
/// | refused after the handler ran: `mint-failed`, `not-replicated` (a replica may hold the new state), `superseded` (an earlier attempt may have made the newer version) | [`MayHaveRun`](RetryAdvice::MayHaveRun) |
/// | `scone-*` refusals, `bad-request` | [`Pointless`](RetryAdvice::Pointless) |
///
/// ```
/// # use scone_rpc::{retry_advice, RetryAdvice};
/// assert_eq!(
///     retry_advice(&tarpc::client::RpcError::DeadlineExceeded),
///     RetryAdvice::MayHaveRun,
/// );
/// ```
pub fn retry_advice(error: &RpcError) -> RetryAdvice {
    if let Some(kind) = refusal(error) {
        return advice_for_refusal(kind);
    }
    match error {
        // The client's own failures: before sending, or on reading the reply.
        RpcError::Send(source) => match source.downcast_ref::<ClientError>() {
            Some(client_error) => client_error.retry_advice(),
            // Failed while the request was put into the connection's buffer: never sent.
            None => RetryAdvice::Safe,
        },
        // `Shutdown` is also what a call gets when the connection dies after sending.
        RpcError::Shutdown
        | RpcError::Channel(_)
        | RpcError::DeadlineExceeded
        | RpcError::Server(_) => RetryAdvice::MayHaveRun,
    }
}

fn advice_for_refusal(kind: RefusalKind) -> RetryAdvice {
    match kind {
        RefusalKind::WrongService
        | RefusalKind::UnsupportedEnvelope
        | RefusalKind::SessionUnavailable
        | RefusalKind::Busy => RetryAdvice::Safe,
        RefusalKind::MintFailed | RefusalKind::NotReplicated | RefusalKind::Superseded => {
            RetryAdvice::MayHaveRun
        }
        RefusalKind::Scone(_) | RefusalKind::BadRequest => RetryAdvice::Pointless,
    }
}

impl From<RpcError> for CallError {
    fn from(error: RpcError) -> Self {
        match (&error, refusal(&error)) {
            (RpcError::Server(server_error), Some(kind)) => {
                let message = server_error
                    .detail
                    .split_once("] ")
                    .map_or(server_error.detail.as_str(), |(_, text)| text)
                    .to_owned();
                CallError::Refused { kind, message }
            }
            _ => CallError::Rpc(error),
        }
    }
}

/// A failure on the client side of a call, carried in `RpcError::Send`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request did not encode.
    #[error("could not encode the request")]
    Encode(#[source] postcard::Error),
    /// The SCONEs to attach break the bundle limits.
    #[error("could not attach the scones")]
    Bundle(#[from] scone::BundleError),
    /// An entrusting client used outside a handler, or its context is busy.
    #[error("could not use the request context")]
    Context(#[from] scone::ContextError),
    /// The SCONEs in the reply do not decode.
    #[error("the reply's scones do not decode")]
    Reply(#[source] crate::envelope::WireSconesError),
    /// The server answered with an envelope version this build does not read.
    #[error("unsupported reply envelope version {0}")]
    UnsupportedEnvelope(u8),
    /// The reply carried a SCONE that does not verify under the keys the store trusts
    /// (forged, tampered with, or signed by a key it was not given); it was not kept.
    #[error("the reply carried a scone for {service} that does not verify")]
    Untrusted {
        /// The service the SCONE names.
        service: scone::ServiceId,
        /// Why it does not verify.
        #[source]
        source: scone::VerifyError,
    },
    /// A state type's service name is not a valid service ID.
    #[error("invalid service name")]
    InvalidService(#[source] scone::InvalidId),
    /// The operating system's random generator failed (making a client ID).
    #[error("no randomness available")]
    Random(#[source] getrandom::Error),
}

impl ClientError {
    /// What this failure says about sending the call again: a failure while building
    /// the request is [`Pointless`](RetryAdvice::Pointless) to retry as it is (nothing
    /// was sent); one while reading the reply means the call ran
    /// ([`MayHaveRun`](RetryAdvice::MayHaveRun)).
    pub fn retry_advice(&self) -> RetryAdvice {
        match self {
            ClientError::Encode(_)
            | ClientError::Bundle(_)
            | ClientError::Context(_)
            | ClientError::InvalidService(_) => RetryAdvice::Pointless,
            ClientError::Random(_) => RetryAdvice::Safe,
            ClientError::Reply(_)
            | ClientError::UnsupportedEnvelope(_)
            | ClientError::Untrusted { .. } => RetryAdvice::MayHaveRun,
        }
    }
}
