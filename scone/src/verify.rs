//! Verification: the checks every SCONE passes before a handler may see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zeroize::Zeroizing;

use crate::clock::{self, Clock};
use crate::error::{DecodeError, VerifyError};
use crate::ids::{KeyId, ServiceId};
use crate::keys::{PublicKey, SigningKey};
use crate::scone::{Scone, DEFAULT_MAX_SCONE_BYTES};
use crate::seal;

/// The public keys a verifier trusts, by key ID.
///
/// To rotate, add the new key here everywhere, switch the minter to it, and remove the
/// old key once the last SCONE it signed has expired.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<KeyId, PublicKey>,
}

impl KeyRing {
    /// An empty key ring: it trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key`; returns false if it was trusted already.
    pub fn insert(&mut self, key: PublicKey) -> bool {
        self.keys.insert(key.key_id(), key).is_none()
    }

    /// Stops trusting the key with `key_id`.
    pub fn remove(&mut self, key_id: KeyId) -> Option<PublicKey> {
        self.keys.remove(&key_id)
    }

    /// The trusted key with `key_id`.
    pub fn get(&self, key_id: KeyId) -> Option<&PublicKey> {
        self.keys.get(&key_id)
    }

    /// How many keys it trusts.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it trusts no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for KeyRing {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(keys: I) -> Self {
        Self {
            keys: keys.into_iter().map(|key| (key.key_id(), key)).collect(),
        }
    }
}

/// Settings of a [`Verifier`].
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// How far the issuer's clock may be ahead of or behind ours: a SCONE counts as expired
    /// only this long after its expiry, and as issued in the future only this far ahead.
    pub clock_skew: Duration,
    /// Largest encoded SCONE accepted, checked before anything is parsed.
    pub max_scone_bytes: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(30),
            max_scone_bytes: DEFAULT_MAX_SCONE_BYTES,
        }
    }
}

/// Checks SCONEs: size, shape, service, validity window, then the signature.
///
/// The cheap checks run first so that junk costs little; the signature check runs last.
/// A verifier built with [`trusting_own_tags`](Self::trusting_own_tags) accepts a SCONE its
/// own key minted on the strength of the issuer tag alone (one keyed blake3 hash) and falls
/// back to the signature for everything else. The tag authenticates the claims (every
/// field and the state); the rest of the seal (Merkle path, signature) is for public
/// verifiers and is not checked on that path, so identify a SCONE by its service,
/// endpoint and version, never by its bytes.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// Public keys by key ID.
    keys: KeyRing,
    /// The only service accepted; `None` accepts any (relays, the CLI).
    service: Option<ServiceId>,
    /// Expiry is checked against it.
    clock: Arc<dyn Clock>,
    /// Skew and size limits.
    config: VerifierConfig,
    /// The issuer's key ID and tag key, when this verifier belongs to the issuing service.
    own_tag: Option<(KeyId, Arc<Zeroizing<[u8; 32]>>)>,
}

impl Verifier {
    /// A verifier trusting `keys`, for any service, with default settings.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            service: None,
            clock: clock::system(),
            config: VerifierConfig::default(),
            own_tag: None,
        }
    }

    /// Accepts only SCONEs addressed to `service`.
    pub fn for_service(mut self, service: ServiceId) -> Self {
        self.service = Some(service);
        self
    }

    /// Replaces the settings.
    pub fn with_config(mut self, config: VerifierConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Trusts `key`'s public half, and accepts SCONEs it minted by their issuer tag.
    pub fn trusting_own_tags(mut self, key: &SigningKey) -> Self {
        self.keys.insert(key.public_key());
        self.own_tag = Some((key.key_id(), Arc::new(Zeroizing::new(*key.tag_key()))));
        self
    }

    /// The trusted keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The trusted keys, to rotate them in place.
    pub fn keys_mut(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    /// Decodes `bytes` within this verifier's size limit and verifies the result.
    pub fn decode(&self, bytes: impl Into<Bytes>) -> Result<Scone, VerifyError> {
        let scone = Scone::decode_with_limit(bytes, self.config.max_scone_bytes)?;
        self.verify(&scone)?;
        Ok(scone)
    }

    /// Verifies a decoded SCONE.
    pub fn verify(&self, scone: &Scone) -> Result<(), VerifyError> {
        if scone.encoded_len() > self.config.max_scone_bytes {
            return Err(DecodeError::TooLarge {
                size: scone.encoded_len(),
                limit: self.config.max_scone_bytes,
            }
            .into());
        }
        if let Some(expected) = &self.service {
            if scone.service() != expected {
                return Err(VerifyError::WrongService {
                    expected: expected.clone(),
                    found: scone.service().clone(),
                });
            }
        }
        self.check_window(scone)?;
        let claims_digest = scone.claims_digest();
        if self.issued_by_me(scone, &claims_digest) {
            return Ok(());
        }
        let key = self
            .keys
            .get(scone.key_id())
            .ok_or(VerifyError::UnknownKey(scone.key_id()))?;
        let seal = scone.seal();
        let leaf = seal::leaf_digest(&claims_digest, seal.tag.as_ref(), seal.index);
        let root = seal::root_from_path(leaf, seal.index, seal.siblings(scone.encoded()));
        let signature = ed25519_dalek::Signature::from_bytes(&seal.signature(scone.encoded()));
        // Strict: rejects non-canonical and small-order encodings, so a signature cannot be
        // altered into another one that still verifies.
        key.ed25519()
            .verify_strict(&root, &signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    fn check_window(&self, scone: &Scone) -> Result<(), VerifyError> {
        let now_ms = self.clock.now_ms();
        let skew_ms = u64::try_from(self.config.clock_skew.as_millis()).unwrap_or(u64::MAX);
        if scone.issued_at_ms() > now_ms.saturating_add(skew_ms) {
            return Err(VerifyError::NotYetValid {
                issued_at_ms: scone.issued_at_ms(),
                now_ms,
            });
        }
        if scone.is_expired_at(now_ms.saturating_sub(skew_ms)) {
            return Err(VerifyError::Expired {
                expires_at_ms: scone.expires_at_ms(),
                now_ms,
            });
        }
        Ok(())
    }

    fn issued_by_me(&self, scone: &Scone, claims_digest: &seal::Digest) -> bool {
        match (&self.own_tag, &scone.seal().tag) {
            // Only while the key is still trusted: removing it from the ring revokes the
            // tag path too.
            (Some((key_id, tag_key)), Some(tag))
                if *key_id == scone.key_id() && self.keys.get(*key_id).is_some() =>
            {
                seal::tag_matches(tag_key, claims_digest, scone.seal().index, tag)
            }
            _ => false,
        }
    }
}
