//! The reply side: verify each SCONE a reply carried, store the good ones, drop the
//! rest. In the background after the reply, or before it when the store asks
//! ([`Store::keep_before_reply`](crate::Store::keep_before_reply), the durable mesh).

use scone::{PutOutcome, Scone, SignatureCheck};
use scone_rpc::envelope::WireScones;

use super::{Relay, Shared};
use crate::client_tag::ClientTag;
use crate::pending::PendingGuard;
use crate::stats::bump;
use crate::store::{HoldKey, Store};

/// Verifies the `scones` of a reply to `key`'s client and stores those of `key`'s service
/// that verify. A SCONE that does not decode or verify is dropped, counted and logged,
/// and never stored; one of another service (a back-end's) is passed to the client but
/// not held.
pub(super) async fn keep<S: Store>(shared: &Shared<S>, key: HoldKey, scones: WireScones) {
    let client = ClientTag(key.0);
    let service = &key.1;
    for bytes in scones.into_encoded() {
        let scone = match Scone::decode_with_limit(bytes, shared.max_scone_bytes) {
            Ok(scone) => scone,
            Err(error) => {
                bump(&shared.stats.forged_dropped);
                tracing::warn!(%client, %service, %error, "dropped a scone that does not decode");
                continue;
            }
        };
        if scone.service() != service {
            bump(&shared.stats.passed_through);
            continue;
        }
        match shared.trust.check(&scone) {
            Ok(SignatureCheck::CachedRoot) => bump(&shared.stats.cached_roots),
            Ok(_) => bump(&shared.stats.signature_checks),
            Err(error) => {
                bump(&shared.stats.forged_dropped);
                tracing::warn!(%client, %service, %error, "dropped a scone that does not verify");
                continue;
            }
        }
        let version = scone.version();
        match shared.store.put(key.clone(), scone).await {
            PutOutcome::Inserted | PutOutcome::Replaced => {
                bump(&shared.stats.stores);
                tracing::trace!(%client, %service, version, "stored");
            }
            PutOutcome::Stale => bump(&shared.stats.stale_stores),
            PutOutcome::TooLarge | PutOutcome::Expired => bump(&shared.stats.unstorable),
        }
    }
}

/// A [`keep`] in the background, on the runtime of the thread that served the request.
///
/// That runtime is a listener worker's, which stops at shutdown once its requests are
/// done, dropping the tasks still there: a keep dropped before it finished starts again
/// on the relay's own runtime, which [`Relay::run`] waits for, so a reply sent just
/// before shutdown still has its SCONEs stored. (Keeping twice is harmless: the second
/// put of a version is a replacement or a stale one.)
pub(super) struct Background<S: Store> {
    relay: Relay<S>,
    key: HoldKey,
    scones: WireScones,
    /// Held until the SCONEs are kept: the client's next request waits for it.
    guard: Option<PendingGuard>,
}

impl<S: Store> Background<S> {
    pub(super) fn new(
        relay: Relay<S>,
        key: HoldKey,
        scones: WireScones,
        guard: PendingGuard,
    ) -> Self {
        Self {
            relay,
            key,
            scones,
            guard: Some(guard),
        }
    }

    pub(super) async fn run(mut self) {
        keep(&self.relay.shared, self.key.clone(), self.scones.clone()).await;
        self.guard.take();
    }
}

impl<S: Store> Drop for Background<S> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let (relay, key) = (self.relay.clone(), self.key.clone());
        let scones = std::mem::take(&mut self.scones);
        self.relay.shared.runtime.spawn(async move {
            keep(&relay.shared, key, scones).await;
            drop(guard);
        });
    }
}
