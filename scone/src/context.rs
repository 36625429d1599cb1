//! The task-local SCONE context: a handler reads its state and writes new state without plumbing.
//!
//! The RPC layer verifies a request's SCONEs, runs the handler inside [`scope`], and on the
//! way out mints SCONEs for the states the handler changed (seed 002, fig. 6: the SCONE is
//! put into the thread context, then taken from it and attached to the reply).
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
use crate::scone::{Scone, Status};

tokio::task_local! {
    static CONTEXT: RefCell<SconeContext>;
}

/// New state a handler wrote for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateWrite {
    /// The service whose state changed.
    pub service: ServiceId,
    /// The new state.
    pub state: Vec<u8>,
    /// The new operation status.
    pub status: Status,
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
    /// SCONEs for other services that came with the request, not verified here: a
    /// back-end's, entrusted to the caller, attached again when this service calls it.
    carried: SconeBundle,
    /// States that differ from the incoming ones, one per service, to be re-minted: a
    /// handler usually writes one, so inline.
    writes: SmallVec<[StateWrite; 1]>,
    /// SCONEs to attach to the reply as they are: a back-end's, entrusted to the caller.
    forwarded: SconeBundle,
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

    /// The request's verified SCONEs.
    pub fn incoming(&self) -> &SconeBundle {
        &self.incoming
    }

    /// The SCONEs for other services that came with the request.
    pub fn carried(&self) -> &SconeBundle {
        &self.carried
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

    /// Records `state` and `status` for `service` if they differ from what came in.
    pub fn write(&mut self, service: &ServiceId, state: Vec<u8>, status: Status) -> Written {
        let unchanged = self
            .incoming
            .get(service)
            .is_some_and(|old| old.state() == state.as_slice() && old.status() == status);
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
                Written::Changed
            }
            (false, None) => {
                self.writes.push(StateWrite {
                    service: service.clone(),
                    state,
                    status,
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

/// The verified SCONE that came in for `service`, if any.
pub fn incoming(service: &ServiceId) -> Result<Option<Scone>, ContextError> {
    with(|ctx| ctx.incoming.get(service).cloned())
}

/// The SCONE for another service (a back-end's) that came with the request, if any.
pub fn carried(service: &ServiceId) -> Result<Option<Scone>, ContextError> {
    with(|ctx| ctx.carried.get(service).cloned())
}

/// Records new state for `service`, keeping its current status (idle for a new session).
pub fn write_state(service: &ServiceId, state: Vec<u8>) -> Result<Written, ContextError> {
    with_mut(|ctx| {
        let status = ctx
            .writes
            .iter()
            .find(|w| &w.service == service)
            .map(|w| w.status)
            .or_else(|| ctx.incoming.get(service).map(Scone::status))
            .unwrap_or_default();
        ctx.write(service, state, status)
    })
}

/// Records new state and operation status for `service`.
pub fn write(service: &ServiceId, state: Vec<u8>, status: Status) -> Result<Written, ContextError> {
    with_mut(|ctx| ctx.write(service, state, status))
}

/// Passes `scone` (a back-end's) through to the caller in the reply.
pub fn forward(scone: Scone) -> Result<(), ContextError> {
    with_mut(|ctx| ctx.forward(scone))?
}
