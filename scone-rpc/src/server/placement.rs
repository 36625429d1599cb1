//! Where a session's state lives between requests: the seam between the serve pipeline
//! and whoever keeps state off the client (a cluster of servers).
//!
//! The pipeline is the same for every placement (`ARCHITECTURE.md`, "One pipeline"):
//!
//! ```text
//! admit (decode, verify, replay check) -> context -> handler -> mint -> commit -> reply
//!    ^ a request with a token and no SCONE: load        (nothing minted: confirm_read)
//! ```
//!
//! A [`Placement`] plugs into three points of it:
//! - [`load`](Placement::load): a request that carries a routing token and no SCONE of
//!   the service gets its state from the placement (its own store, or the owners the
//!   token names). What it loads is admitted like a SCONE the request carried: decoded,
//!   verified, checked by the replay guard.
//! - [`commit`](Placement::commit): each SCONE the server mints (a change or a renewal)
//!   goes through it before the reply leaves: store it, replicate it and wait for acks.
//!   It answers with the token the reply carries, and whether the reply also carries the
//!   SCONE. An error refuses the call instead: the client is never told a change was
//!   made that the placement did not keep.
//! - [`confirm_read`](Placement::confirm_read): a request whose state was loaded and
//!   that minted nothing (a read) goes through it before the reply leaves, so that no
//!   reply shows a state the placement could lose.
//!
//! [`ClientHeld`], the default, does nothing at any of them: the client holds its
//! SCONEs, and the pipeline costs what it did before this seam existed (the points are
//! static calls to ready futures, inlined away; a request without a token never reaches
//! `load` or `confirm_read`).
//!
//! The relay needs no placement: it works between client and server, on the envelope.

use std::future::{ready, Future};

use scone::{Scone, ServiceId};

use crate::envelope::RefusalKind;

/// Where a session's state lives between requests; see the [module docs](self).
///
/// Implementations are shared by every request of a server (`Send + Sync`), and their
/// futures run on its workers (`Send`).
pub trait Placement: Send + Sync + 'static {
    /// What a loaded request holds until it ends (its reply sent, or its future
    /// dropped): a lock on its session, say, so that requests on one session run one at
    /// a time. `()` for none.
    type Lease: Send + 'static;

    /// The state of a request that carries routing token `token` and no SCONE of
    /// `service`: `None` when there is none (the handler starts a new session), with the
    /// lease the request holds until it ends; or an error that refuses the call
    /// ([`PlacementError::Unavailable`] when the owners the token names cannot be
    /// reached, [`PlacementError::Busy`] when the session stays locked past
    /// `deadline`, the request's own).
    fn load(
        &self,
        service: &ServiceId,
        token: &[u8],
        deadline: std::time::Instant,
    ) -> impl Future<Output = Result<(Option<Scone>, Self::Lease), PlacementError>> + Send;

    /// Keeps a SCONE the server just minted, before the reply leaves.
    fn commit(
        &self,
        commit: Commit<'_>,
    ) -> impl Future<Output = Result<Committed, PlacementError>> + Send;

    /// Ends the session whose newest SCONE the request came with (`ended`), because
    /// the handler ended it; before the reply leaves. The default does nothing (a
    /// client-held SCONE cannot be taken back).
    fn end(
        &self,
        ended: &Scone,
        token: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), PlacementError>> + Send {
        let _ = (ended, token);
        ready(Ok(()))
    }

    /// A request whose state [`load`](Self::load) gave (`read`, for routing token
    /// `token`) and that minted nothing: a read. Before its reply leaves, the placement
    /// makes sure that what the reply shows is kept as durably as a commit keeps a
    /// change, if it could be less: a placement that may load a version its client was
    /// never acknowledged (one a refused commit left on a replica, say) must, or a read
    /// could show a change that is lost afterwards. It may answer with the token the
    /// reply carries (naming the version read); an error refuses the call. The default
    /// does nothing.
    fn confirm_read(
        &self,
        read: &Scone,
        token: &[u8],
        deadline: std::time::Instant,
    ) -> impl Future<Output = Result<Option<Box<[u8]>>, PlacementError>> + Send {
        let _ = (read, token, deadline);
        ready(Ok(None))
    }

    /// Whether [`commit`](Self::commit) wants each change's delta ([`Commit::delta`]).
    /// Recording one costs an encoding per changed field, so only a placement that ships
    /// deltas asks.
    fn wants_deltas(&self) -> bool {
        false
    }
}

/// A SCONE to keep, with what it came from.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Commit<'a> {
    /// The SCONE just minted: a new session, a change, or a renewal.
    pub minted: &'a Scone,
    /// The version it succeeds (carried by the request, or loaded); `None` for a new
    /// session.
    pub previous: Option<&'a Scone>,
    /// What changed from `previous` (`scone_rpc::state::Delta`, postcard), when the
    /// placement [wants deltas](Placement::wants_deltas) and the handler's state type
    /// tracks its changes; `None` for a renewal, a new session or an opaque state.
    pub delta: Option<&'a [u8]>,
    /// The routing token the request carried, if any.
    pub token: Option<&'a [u8]>,
    /// The request's deadline: past it, its client has given up (and may be sending it
    /// elsewhere), so a placement should not make its change durable any more.
    pub deadline: std::time::Instant,
}

/// What a [`Placement`] did with a minted SCONE.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// The routing token the reply carries (the envelope's `token`); `None` for none.
    pub token: Option<Box<[u8]>>,
    /// Whether the reply also carries the SCONE (the client holds it).
    pub reply_carries_scone: bool,
}

impl Committed {
    /// The client holds the SCONE: it goes back in the reply, with no token.
    pub const CLIENT_HELD: Committed = Committed {
        token: None,
        reply_carries_scone: true,
    };

    /// The placement holds the SCONE: the reply carries `token`, and the SCONE too if
    /// `reply_carries_scone`.
    pub fn held(token: Box<[u8]>, reply_carries_scone: bool) -> Self {
        Self {
            token: Some(token),
            reply_carries_scone,
        }
    }
}

/// Why a placement refused a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The session the token names is held by no node that answered.
    #[error("the session is unavailable: {0}")]
    Unavailable(String),
    /// The new SCONE reached fewer replicas than required: the change was not made
    /// durable, so the reply is not sent.
    #[error("replicated to {acknowledged} of {required} replicas")]
    NotReplicated {
        /// Replicas that acknowledged.
        acknowledged: usize,
        /// Replicas required.
        required: usize,
    },
    /// The token does not decode, or names another service.
    #[error("bad routing token: {0}")]
    BadToken(String),
    /// A newer version of the session than the one the request was served from is
    /// held elsewhere (this node, or the client, was behind): the change is not made.
    /// The client reads the session again and retries.
    #[error("a newer version of the session exists: {0}")]
    Superseded(String),
    /// The node cannot keep another session.
    #[error("no room for the session: {0}")]
    Full(String),
    /// The session stayed locked by other requests past this request's deadline.
    #[error("the session is busy: {0}")]
    Busy(String),
}

impl PlacementError {
    /// How the refusal reads on the wire.
    pub fn refusal_kind(&self) -> RefusalKind {
        match self {
            PlacementError::Unavailable(_) => RefusalKind::SessionUnavailable,
            PlacementError::NotReplicated { .. } => RefusalKind::NotReplicated,
            PlacementError::BadToken(_) => RefusalKind::BadRequest,
            PlacementError::Superseded(_) => RefusalKind::Superseded,
            PlacementError::Full(_) => RefusalKind::NotReplicated,
            PlacementError::Busy(_) => RefusalKind::Busy,
        }
    }
}

/// The client holds its SCONEs; the server keeps nothing (the default placement).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientHeld;

impl Placement for ClientHeld {
    type Lease = ();

    /// A token means nothing here: the request is served with the SCONEs it carries.
    fn load(
        &self,
        _service: &ServiceId,
        _token: &[u8],
        _deadline: std::time::Instant,
    ) -> impl Future<Output = Result<(Option<Scone>, ()), PlacementError>> + Send {
        ready(Ok((None, ())))
    }

    fn commit(
        &self,
        _commit: Commit<'_>,
    ) -> impl Future<Output = Result<Committed, PlacementError>> + Send {
        ready(Ok(Committed::CLIENT_HELD))
    }
}
