//! Errors of the RPC layer, and how a refusal survives tarpc's error type.
//!
//! tarpc's generated clients return `tarpc::client::RpcError`, which has no room for our
//! types. A refusal therefore travels as `RpcError::Server` with `PermissionDenied`
//! (SCONE refused, wrong service) or `InvalidData` (anything else), and its detail starts
//! with a machine-readable code that [`refusal`] turns back into a [`RefusalKind`].

use tarpc::client::RpcError;

use crate::envelope::RefusalKind;

/// The start of a refusal's detail text; the code follows in hex, then `]`.
pub(crate) const REFUSAL_PREFIX: &str = "scone-refusal[";

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

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
    let code = unhex(code.split(']').next()?)?;
    postcard::from_bytes(&code).ok()
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
    /// The operating system's random generator failed (making a client ID).
    #[error("no randomness available")]
    Random(#[source] getrandom::Error),
}
