//! The reply side: verify each SCONE a reply carried, store the good ones, drop the
//! rest. In the background after the reply, or before it when the store asks
//! ([`Store::keep_before_reply`](crate::Store::keep_before_reply), the durable mesh).

use scone::{PutOutcome, Scone, SignatureCheck};
use scone_rpc::envelope::WireScones;

use super::Shared;
use crate::client_tag::ClientTag;
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
