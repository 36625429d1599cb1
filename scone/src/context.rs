//! The task-local SCONE context: a handler reads its state and writes new state without plumbing.
//!
//! The RPC layer verifies a request's SCONEs, runs the handler inside [`scope`], and on the
//! way out mints SCONEs for the states the handler changed: the SCONE is put into the
//! task's context for the handler, then taken from it and attached to the reply.
//!
//! A service that seals its state ([`sealed`](crate::sealed)) opens each incoming SCONE's
//! state once verified ([`SconeContext::open_incoming`]) and keeps the plaintext beside the
//! SCONE: handlers read it with [`incoming_state`], which works alike for sealed and plain
//! state, and write plaintext, which the server seals again before minting.
//!
//! ```
//! use scone::context::{self, SconeContext, Written};
//! use scone::ServiceId;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let cart = ServiceId::new("cart").unwrap();
//! let (written, ctx) = context::scope(SconeContext::default(), async {
//!     // Inside a handler: no SCONE came in, so this is a new session.
//!     assert!(context::incoming(&cart).unwrap().is_none());
//!     context::write_state(&cart, b"one apple".to_vec()).unwrap()
//! })
//! .await;
//! assert_eq!(written, Written::Changed);
//! assert_eq!(ctx.writes()[0].state, b"one apple");
//! # }
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use smallvec::SmallVec;
use tokio::task::futures::TaskLocalFuture;

use crate::bundle::SconeBundle;
use crate::error::ContextError;
use crate::ids::ServiceId;
use crate::scone::{Scone, StateFormat, Status};
use crate::sealed::{SealedError, StateSealer};

tokio::task_local! {
    static CONTEXT: RefCell<SconeContext>;
}

/// New state a handler wrote for one service.
#[derive(Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// The service whose state changed.
    pub service: ServiceId,
    /// The new state.
    pub state: Vec<u8>,
    /// The new operation status.
    pub status: Status,
    /// How the state is encoded: minted into the SCONE's claims, so readers decode it
    /// in this format only. [`write_state`] writes [`Opaque`](StateFormat::Opaque).
    pub format: StateFormat,
    /// What changed since the incoming state, as the writer encoded it (for a derived
    /// state, `scone_rpc::state::Delta` in postcard), when the server asked for deltas
    /// ([`deltas_wanted`]) and the writer tracks its changes; `None` otherwise. A
    /// placement that replicates ships it instead of the whole state.
    pub delta: Option<Vec<u8>>,
}

impl std::fmt::Debug for StateWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The size only, as for a SCONE: for a sealed service this is the plaintext.
        f.debug_struct("StateWrite")
            .field("service", &self.service)
            .field("state_len", &self.state.len())
            .field("status", &self.status)
            .field("format", &self.format)
            .field("delta_len", &self.delta.as_ref().map(Vec::len))
            .finish()
    }
}

/// The opened state of a sealed incoming SCONE.
#[derive(Clone, PartialEq, Eq)]
struct Opened {
    /// The service whose SCONE it came from.
    service: ServiceId,
    /// The plaintext.
    state: Vec<u8>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state was sealed to keep it from view: debug output shows its size only.
        f.debug_struct("Opened")
            .field("service", &self.service)
            .field("state_len", &self.state.len())
            .finish()
    }
}

/// Whether a write changed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The state differs from what came in: a new SCONE will be minted.
    Changed,
    /// The state equals what came in: nothing will be minted.
    Unchanged,
}

/// One request's SCONEs: what came in, what the handler wrote, and what it passes through.
#[derive(Clone, Debug, Default)]
pub struct SconeContext {
    /// The request's verified SCONEs for this service.
    incoming: SconeBundle,
    /// The opened states of the sealed ones among them: a service has one, so inline.
    opened: SmallVec<[Opened; 1]>,
    /// SCONEs for other services that came with the request, not verified here: a
    /// back-end's, entrusted to the caller, attached again when this service calls it.
    carried: SconeBundle,
    /// States that differ from the incoming ones, one per service, to be re-minted: a
    /// handler usually writes one, so inline.
    writes: SmallVec<[StateWrite; 1]>,
    /// SCONEs to attach to the reply as they are: a back-end's, entrusted to the caller.
    forwarded: SconeBundle,
    /// Whether writers that track their changes should also record them as a delta.
    deltas_wanted: bool,
    /// Services whose session the handler ended.
    ended: SmallVec<[ServiceId; 1]>,
}

impl SconeContext {
    /// A context holding a request's verified SCONEs.
    pub fn new(incoming: SconeBundle) -> Self {
        Self {
            incoming,
            ..Self::default()
        }
    }

    /// Adds the SCONEs for other services that came with the request.
    pub fn with_carried(mut self, carried: SconeBundle) -> Self {
        self.carried = carried;
        self
    }

    /// Asks writers that track their changes to record them too
    /// ([`StateWrite::delta`]): a placement that replicates deltas sets it.
    pub fn with_deltas_wanted(mut self, wanted: bool) -> Self {
        self.deltas_wanted = wanted;
        self
    }

    /// Adds a verified SCONE that did not come with the request: one a placement kept
    /// for it (loaded by a routing token). Fails if one of its service is already in.
    pub fn add_incoming(&mut self, scone: Scone) -> Result<(), crate::BundleError> {
        self.incoming.insert_new(scone)
    }

    /// The request's verified SCONEs.
    pub fn incoming(&self) -> &SconeBundle {
        &self.incoming
    }

    /// Opens the state of the incoming SCONE for `service`, if one came, with `sealer`,
    /// and keeps the plaintext for [`incoming_state`](Self::incoming_state). Call it once
    /// the SCONE is verified, for a service that seals its state. Returns whether there
    /// was one to open.
    pub fn open_incoming(
        &mut self,
        service: &ServiceId,
        sealer: &StateSealer,
    ) -> Result<bool, SealedError> {
        let Some(scone) = self.incoming.get(service) else {
            return Ok(false);
        };
        let state = sealer.open_scone(scone)?;
        self.set_opened(service, state);
        Ok(true)
    }

    /// Sets the opened state of the incoming SCONE for `service`: the plaintext a handler
    /// reads in place of the SCONE's state (for a server that opens states itself).
    pub fn with_opened(mut self, service: &ServiceId, state: Vec<u8>) -> Self {
        self.set_opened(service, state);
        self
    }

    fn set_opened(&mut self, service: &ServiceId, state: Vec<u8>) {
        match self.opened.iter_mut().find(|o| &o.service == service) {
            Some(opened) => opened.state = state,
            None => self.opened.push(Opened {
                service: service.clone(),
                state,
            }),
        }
    }

    /// The state that came in for `service`: opened if it was sealed (and opened), the
    /// SCONE's state as it is otherwise; `None` when no SCONE came for it. A sealed state
    /// that was not opened is ciphertext: readers check [`Scone::is_sealed`] and
    /// [`is_opened`](Self::is_opened), and the SCONE's [`Scone::state_format`].
    pub fn incoming_state(&self, service: &ServiceId) -> Option<&[u8]> {
        let scone = self.incoming.get(service)?;
        Some(
            self.opened
                .iter()
                .find(|o| &o.service == service)
                .map_or(scone.state(), |o| o.state.as_slice()),
        )
    }

    /// Whether the incoming state for `service` was opened (it was sealed).
    pub fn is_opened(&self, service: &ServiceId) -> bool {
        self.incoming.get(service).is_some() && self.opened.iter().any(|o| &o.service == service)
    }

    /// The SCONEs for other services that came with the request.
    pub fn carried(&self) -> &SconeBundle {
        &self.carried
    }

    /// The services whose session the handler ended ([`end_session`]).
    pub fn ended(&self) -> &[ServiceId] {
        &self.ended
    }

    /// The changed states, in the order first written.
    pub fn writes(&self) -> &[StateWrite] {
        &self.writes
    }

    /// The SCONEs to pass through.
    pub fn forwarded(&self) -> &SconeBundle {
        &self.forwarded
    }

    /// Splits the context after the handler: the verified incoming SCONEs (the previous
    /// versions of what to mint), the changed states, and the SCONEs to pass through.
    pub fn into_parts(
        self,
    ) -> (
        SconeBundle,
        impl ExactSizeIterator<Item = StateWrite>,
        SconeBundle,
    ) {
        (self.incoming, self.writes.into_iter(), self.forwarded)
    }

    /// Records `state` and `status` for `service` if they differ from what came in (its
    /// opened state, if it was sealed), as an [`Opaque`](StateFormat::Opaque) state.
    pub fn write(&mut self, service: &ServiceId, state: Vec<u8>, status: Status) -> Written {
        self.write_as(service, state, status, StateFormat::Opaque)
    }

    /// Records `state`, encoded as `format`, and `status` for `service` if they differ
    /// from what came in (its opened state, if it was sealed): the same bytes in another
    /// format are a change.
    pub fn write_as(
        &mut self,
        service: &ServiceId,
        state: Vec<u8>,
        status: Status,
        format: StateFormat,
    ) -> Written {
        // Against the plaintext: a sealed state is compared with what the handler read,
        // never with the ciphertext (which no write would ever equal).
        let unchanged = self.incoming.get(service).is_some_and(|old| {
            old.status() == status
                && old.state_format() == format
                && self.incoming_state(service) == Some(state.as_slice())
        });
        let existing = self.writes.iter().position(|w| &w.service == service);
        match (unchanged, existing) {
            (true, Some(i)) => {
                // Written back to what came in: nothing left to mint.
                self.writes.remove(i);
                Written::Unchanged
            }
            (true, None) => Written::Unchanged,
            (false, Some(i)) => {
                self.writes[i].state = state;
                self.writes[i].status = status;
                self.writes[i].format = format;
                // Described the earlier write, not this one.
                self.writes[i].delta = None;
                Written::Changed
            }
            (false, None) => {
                self.writes.push(StateWrite {
                    service: service.clone(),
                    state,
                    status,
                    format,
                    delta: None,
                });
                Written::Changed
            }
        }
    }

    /// Adds a SCONE to pass through to the caller unchanged.
    pub fn forward(&mut self, scone: Scone) -> Result<(), ContextError> {
        self.forwarded.insert(scone)?;
        Ok(())
    }
}

/// Runs `future` with `ctx` as its context; returns its output and the context after it.
pub fn scope<F: Future>(ctx: SconeContext, future: F) -> Scoped<F> {
    Scoped {
        inner: CONTEXT.scope(RefCell::new(ctx), future),
    }
}

pin_project_lite::pin_project! {
    /// A future running with a SCONE context; made by [`scope`]. It yields the future's
    /// output and the context as the future left it.
    ///
    /// A named future rather than an `async fn`: an `async fn` would keep its arguments
    /// (the context and the handler's future) beside the future it builds from them, and
    /// this sits on every request's path.
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F: Future> {
        #[pin]
        inner: TaskLocalFuture<RefCell<SconeContext>, F>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = (F::Output, SconeContext);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let output = std::task::ready!(inner.as_mut().poll(cx));
        // The value is only taken here, once the future is done, so it is always present.
        let ctx = inner.take_value().map(RefCell::into_inner);
        Poll::Ready((output, ctx.unwrap_or_default()))
    }
}

/// Runs `f` with `ctx` as its context, for synchronous code and tests.
pub fn sync_scope<R>(ctx: SconeContext, f: impl FnOnce() -> R) -> (R, SconeContext) {
    CONTEXT.sync_scope(RefCell::new(ctx), || {
        let output = f();
        (output, CONTEXT.with(RefCell::take))
    })
}

/// Reads the current context.
pub fn with<R>(f: impl FnOnce(&SconeContext) -> R) -> Result<R, ContextError> {
    CONTEXT
        .try_with(|cell| {
            let ctx = cell.try_borrow().map_err(|_| ContextError::Reentrant)?;
            Ok(f(&ctx))
        })
        .map_err(|_| ContextError::NoContext)?
}

fn with_mut<R>(f: impl FnOnce(&mut SconeContext) -> R) -> Result<R, ContextError> {
    CONTEXT
        .try_with(|cell| {
            let mut ctx = cell.try_borrow_mut().map_err(|_| ContextError::Reentrant)?;
            Ok(f(&mut ctx))
        })
        .map_err(|_| ContextError::NoContext)?
}

/// The verified SCONE that came in for `service`, if any. For a sealed service its
/// [`state`](Scone::state) is ciphertext; [`incoming_state`] gives the opened state.
pub fn incoming(service: &ServiceId) -> Result<Option<Scone>, ContextError> {
    with(|ctx| ctx.incoming.get(service).cloned())
}

/// The state that came in for `service`, opened if it was sealed; `None` for a new
/// session. Read this rather than the SCONE's [`state`](Scone::state), which for a sealed
/// service is ciphertext.
pub fn incoming_state(service: &ServiceId) -> Result<Option<Vec<u8>>, ContextError> {
    with(|ctx| ctx.incoming_state(service).map(<[u8]>::to_vec))
}

/// The SCONE for another service (a back-end's) that came with the request, if any.
pub fn carried(service: &ServiceId) -> Result<Option<Scone>, ContextError> {
    with(|ctx| ctx.carried.get(service).cloned())
}

/// Ends the session of `service`: whatever the handler wrote for it is dropped, no new
/// SCONE is minted for it, and a server placement that keeps sessions (a cluster) drops
/// it on every node, so the client's next call starts a new session.
///
/// A SCONE the client holds itself cannot be taken back: the reply just carries no new
/// one, and the client's copy stays valid until it expires (keep TTLs short, or use the
/// replay guard, where that matters).
pub fn end_session(service: &ServiceId) -> Result<(), ContextError> {
    with_mut(|ctx| {
        ctx.writes.retain(|write| &write.service != service);
        if !ctx.ended.contains(service) {
            ctx.ended.push(service.clone());
        }
    })
}

/// Whether the server asked writers that track their changes to record them as a delta
/// ([`StateWrite::delta`]); `false` outside a request.
pub fn deltas_wanted() -> bool {
    with(|ctx| ctx.deltas_wanted).unwrap_or(false)
}

/// Records `delta` as what changed in the state last written for `service` (see
/// [`StateWrite::delta`]); returns whether there was such a write. Call it right after
/// the write it describes: a later write of the same service clears it.
pub fn attach_delta(service: &ServiceId, delta: Vec<u8>) -> Result<bool, ContextError> {
    with_mut(
        |ctx| match ctx.writes.iter_mut().find(|w| &w.service == service) {
            Some(write) => {
                write.delta = Some(delta);
                true
            }
            None => false,
        },
    )
}

/// Records new state for `service`, as an [`Opaque`](StateFormat::Opaque) state, keeping
/// its current status (idle for a new session).
pub fn write_state(service: &ServiceId, state: Vec<u8>) -> Result<Written, ContextError> {
    write_state_as(service, state, StateFormat::Opaque)
}

/// Records new state for `service`, encoded as `format` (which the minted SCONE's claims
/// will name), keeping its current status (idle for a new session).
pub fn write_state_as(
    service: &ServiceId,
    state: Vec<u8>,
    format: StateFormat,
) -> Result<Written, ContextError> {
    with_mut(|ctx| {
        let status = ctx
            .writes
            .iter()
            .find(|w| &w.service == service)
            .map(|w| w.status)
            .or_else(|| ctx.incoming.get(service).map(Scone::status))
            .unwrap_or_default();
        ctx.write_as(service, state, status, format)
    })
}

/// Records new state and operation status for `service`, as an
/// [`Opaque`](StateFormat::Opaque) state.
pub fn write(service: &ServiceId, state: Vec<u8>, status: Status) -> Result<Written, ContextError> {
    with_mut(|ctx| ctx.write(service, state, status))
}

/// Passes `scone` (a back-end's) through to the caller in the reply.
pub fn forward(scone: Scone) -> Result<(), ContextError> {
    with_mut(|ctx| ctx.forward(scone))?
}
