//! Which keys the relay trusts for which service, and the signatures it has checked.

use std::collections::HashSet;
use std::num::NonZeroUsize;

use scone::{
    KeyRing, Scone, ServiceId, SignatureCheck, VerifiedRoots, Verifier, VerifierConfig, VerifyError,
};

use crate::config::TrustEntry;
use crate::error::RelayError;

/// The relay's verifier: public keys bound to services, and the Merkle roots already
/// verified, so that SCONEs a server minted together cost one signature check in all.
#[derive(Debug)]
pub(crate) struct Trust {
    /// Keys by service; a key vouches only for the services it is trusted for.
    verifier: Verifier,
    /// (key, root, signature) triples that have verified.
    roots: VerifiedRoots,
    /// The services some key is trusted for (the ring does not list them).
    services: HashSet<ServiceId>,
    /// Largest SCONE decoded.
    max_scone_bytes: usize,
}

impl Trust {
    /// Trusts each entry's key for its service. Fails if two different keys share a
    /// key ID.
    pub(crate) fn new(
        entries: &[TrustEntry],
        roots: NonZeroUsize,
        max_scone_bytes: usize,
    ) -> Result<Self, RelayError> {
        let mut ring = KeyRing::new();
        for entry in entries {
            ring.trust(entry.service.clone(), entry.key)
                .map_err(|source| RelayError::Trust {
                    service: entry.service.clone(),
                    source,
                })?;
        }
        let config = VerifierConfig {
            max_scone_bytes,
            ..VerifierConfig::default()
        };
        Ok(Self {
            verifier: Verifier::new(ring).with_config(config),
            roots: VerifiedRoots::new(roots),
            services: entries.iter().map(|entry| entry.service.clone()).collect(),
            max_scone_bytes,
        })
    }

    /// Whether any key is trusted for SCONEs of `service`.
    pub(crate) fn covers(&self, service: &ServiceId) -> bool {
        self.services.contains(service)
    }

    /// Largest SCONE decoded.
    pub(crate) fn max_scone_bytes(&self) -> usize {
        self.max_scone_bytes
    }

    /// Verifies `scone` against the keys trusted for its service.
    pub(crate) fn check(&self, scone: &Scone) -> Result<SignatureCheck, VerifyError> {
        self.verifier.verify_caching(scone, &self.roots)
    }
}
