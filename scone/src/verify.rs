//! Verification: the checks every SCONE passes before a handler may see it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;
use zeroize::Zeroizing;

use crate::clock::{self, Clock};
use crate::error::{DecodeError, KeyError, VerifyError};
use crate::ids::{KeyId, ServiceId};
use crate::keys::{PublicKey, SigningKey};
use crate::scone::{Scone, DEFAULT_MAX_SCONE_BYTES};
use crate::seal;

mod roots;

pub use roots::{SignatureCheck, VerifiedRoots};

/// The public keys a verifier trusts, each for the services it signs for.
///
/// A key vouches only for SCONEs of the services it is trusted for: a verifier that trusts
/// both `cart`'s and `billing`'s keys still refuses a `billing` SCONE signed with `cart`'s
/// key. One key may be trusted for several services (a server that serves several).
///
/// Keys are found by the 8-byte key ID each SCONE names. Two different keys may not share
/// an ID here: trusting one whose ID is taken by another is refused
/// ([`KeyError::KeyIdCollision`]), never a silent replacement.
///
/// To rotate, trust the new key here everywhere, switch the minter to it, and remove the
/// old key once the last SCONE it signed has expired.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    /// The trusted keys by key ID, with the services each signs for.
    keys: HashMap<KeyId, Trusted>,
}

/// A trusted key and the services it is trusted for.
#[derive(Clone, Debug)]
struct Trusted {
    /// The key.
    key: PublicKey,
    /// Usually one service, so a short list on the stack beats a set.
    services: SmallVec<[ServiceId; 1]>,
}

impl KeyRing {
    /// An empty key ring: it trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key ring trusting each of `keys` for `service`. Fails if two different keys share
    /// a key ID.
    pub fn for_service(
        service: ServiceId,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> Result<Self, KeyError> {
        let mut ring = Self::new();
        for key in keys {
            ring.trust(service.clone(), key)?;
        }
        Ok(ring)
    }

    /// Trusts `key` for SCONEs of `service` (as well as for any service it was trusted
    /// for already). Trusting it again for the same service changes nothing.
    ///
    /// Fails with [`KeyError::KeyIdCollision`] if a different key with the same key ID is
    /// trusted: the ring keeps the key it had.
    pub fn trust(&mut self, service: ServiceId, key: PublicKey) -> Result<(), KeyError> {
        match self.keys.entry(key.key_id()) {
            Entry::Occupied(mut entry) => {
                let trusted = entry.get_mut();
                if trusted.key != key {
                    return Err(KeyError::KeyIdCollision(key.key_id()));
                }
                if !trusted.services.contains(&service) {
                    trusted.services.push(service);
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(Trusted {
                    key,
                    services: smallvec::smallvec![service],
                });
            }
        }
        Ok(())
    }

    /// Stops trusting the key with `key_id`, for every service.
    pub fn remove(&mut self, key_id: KeyId) -> Option<PublicKey> {
        self.keys.remove(&key_id).map(|trusted| trusted.key)
    }

    /// Stops trusting the key with `key_id` for `service` only; returns whether it was
    /// trusted for it. A key left with no service is removed.
    pub fn untrust(&mut self, service: &ServiceId, key_id: KeyId) -> bool {
        let Entry::Occupied(mut entry) = self.keys.entry(key_id) else {
            return false;
        };
        let services = &mut entry.get_mut().services;
        let Some(at) = services.iter().position(|s| s == service) else {
            return false;
        };
        services.remove(at);
        if services.is_empty() {
            entry.remove();
        }
        true
    }

    /// The trusted key with `key_id`, whatever services it is trusted for.
    pub fn get(&self, key_id: KeyId) -> Option<&PublicKey> {
        self.keys.get(&key_id).map(|trusted| &trusted.key)
    }

    /// The key with `key_id`, if it is trusted for `service`.
    pub fn get_for(&self, service: &ServiceId, key_id: KeyId) -> Option<&PublicKey> {
        self.keys
            .get(&key_id)
            .filter(|trusted| trusted.services.contains(service))
            .map(|trusted| &trusted.key)
    }

    /// The services the key with `key_id` is trusted for (empty if it is not trusted).
    pub fn services(&self, key_id: KeyId) -> &[ServiceId] {
        self.keys
            .get(&key_id)
            .map_or(&[], |trusted| trusted.services.as_slice())
    }

    /// How many keys it trusts (a key trusted for several services counts once).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it trusts no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that may have signed `scone`: named by it and trusted for its service.
    fn key_for(&self, scone: &Scone) -> Result<&PublicKey, VerifyError> {
        let trusted = self
            .keys
            .get(&scone.key_id())
            .ok_or(VerifyError::UnknownKey(scone.key_id()))?;
        if !trusted.services.contains(scone.service()) {
            return Err(VerifyError::KeyNotForService {
                key_id: scone.key_id(),
                service: scone.service().clone(),
            });
        }
        Ok(&trusted.key)
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
    /// Longest lifetime (expiry minus issue time) accepted; `None`, the default, accepts
    /// any. Caps what a stolen SCONE is worth whatever TTL its issuer chose: a verifier
    /// that knows the issuer's TTL sets this to it (plus a margin), so a SCONE minted with
    /// a longer one, by mistake or by a misconfigured server, is refused
    /// ([`VerifyError::LifetimeTooLong`]).
    pub max_ttl: Option<Duration>,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(30),
            max_scone_bytes: DEFAULT_MAX_SCONE_BYTES,
            max_ttl: None,
        }
    }
}

/// Checks SCONEs: size, shape, service, validity window and lifetime, that its key is
/// trusted for its service, then the signature.
///
/// The cheap checks run first so that junk costs little; the signature check runs last.
/// A verifier built with [`trusting_own_tags`](Self::trusting_own_tags) accepts a SCONE its
/// own key minted on the strength of the issuer tag instead (one keyed blake3 hash) and
/// falls back to the signature for everything else. The tag covers the claims, position,
/// Merkle path and signature, so the issuer accepts exactly the SCONEs a public verifier
/// with the same keys accepts (see [the issuer tag](crate::seal#the-issuer-tag)). The tag
/// itself is not signed: a SCONE whose tag was garbled or stripped is still valid (checked
/// by its signature), so identify a SCONE by its service, endpoint and version, never by
/// its bytes.
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
    /// The issuer's public key and tag key, when this verifier belongs to the issuing
    /// service.
    own_tag: Option<(PublicKey, Arc<Zeroizing<[u8; 32]>>)>,
}

impl Verifier {
    /// A verifier trusting `keys`, with default settings. It accepts SCONEs of any service
    /// whose key is trusted for it; [`for_service`](Self::for_service) narrows that to one.
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

    /// Trusts `key`'s public half for `service`, and accepts the SCONEs it minted for
    /// that service by their issuer tag. `service` is the issuing service, normally the
    /// one given to [`for_service`](Self::for_service); SCONEs `key` minted for other
    /// services are refused, like those of any key not trusted for their service.
    ///
    /// Fails with [`KeyError::KeyIdCollision`] if the ring trusts a different key with the
    /// same key ID.
    pub fn trusting_own_tags(
        mut self,
        service: ServiceId,
        key: &SigningKey,
    ) -> Result<Self, KeyError> {
        self.keys.trust(service, key.public_key())?;
        self.own_tag = Some((key.public_key(), Arc::new(Zeroizing::new(*key.tag_key()))));
        Ok(self)
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
        self.verify_with(scone, None).map(|_| ())
    }

    /// Verifies a decoded SCONE like [`verify`](Self::verify), but checks the signature
    /// only if `roots` has not seen this key, Merkle root and signature verify before (and
    /// remembers them when it does). Every other check runs as usual, and the root is
    /// recomputed from the SCONE itself; see [`VerifiedRoots`] for why that is sound.
    ///
    /// For a verifier that meets many SCONEs minted together, such as a relay: a server
    /// that signs in groups gives each group one root, so one signature check serves the
    /// whole group.
    pub fn verify_caching(
        &self,
        scone: &Scone,
        roots: &VerifiedRoots,
    ) -> Result<SignatureCheck, VerifyError> {
        self.verify_with(scone, Some(roots))
    }

    fn verify_with(
        &self,
        scone: &Scone,
        roots: Option<&VerifiedRoots>,
    ) -> Result<SignatureCheck, VerifyError> {
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
        // Before the tag path too: removing a key, or not trusting it for this service,
        // revokes the issuer's shortcut with it.
        let key = self.keys.key_for(scone)?;
        let claims_digest = scone.claims_digest();
        let seal = scone.seal();
        let signature = seal.signature(scone.encoded());
        if self.issued_by_me(scone, key, &claims_digest, &signature) {
            return Ok(SignatureCheck::IssuerTag);
        }
        let leaf = seal::leaf_digest(&claims_digest, seal.index);
        let root = seal::root_from_path(leaf, seal.index, seal.siblings(scone.encoded()));
        if roots.is_some_and(|roots| roots.contains(key, &root, &signature)) {
            return Ok(SignatureCheck::CachedRoot);
        }
        // Strict: rejects non-canonical and small-order encodings, so a signature cannot be
        // altered into another one that still verifies.
        key.ed25519()
            .verify_strict(&root, &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| VerifyError::BadSignature)?;
        if let Some(roots) = roots {
            roots.insert(key, &root, &signature);
        }
        Ok(SignatureCheck::Checked)
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
        if let Some(max_ttl) = self.config.max_ttl {
            let max_ttl_ms = u64::try_from(max_ttl.as_millis()).unwrap_or(u64::MAX);
            let lifetime_ms = scone.expires_at_ms().saturating_sub(scone.issued_at_ms());
            if lifetime_ms > max_ttl_ms {
                return Err(VerifyError::LifetimeTooLong {
                    lifetime_ms,
                    max_ttl_ms,
                });
            }
        }
        Ok(())
    }

    /// Whether `scone`, whose trusted key is `key`, carries this issuer's tag over its
    /// claims, position, path and signature.
    fn issued_by_me(
        &self,
        scone: &Scone,
        key: &PublicKey,
        claims_digest: &seal::Digest,
        signature: &[u8; 64],
    ) -> bool {
        match (&self.own_tag, &scone.seal().tag) {
            (Some((own_key, tag_key)), Some(tag)) if own_key == key => seal::tag_matches(
                tag_key,
                claims_digest,
                scone.seal().index,
                scone.seal().siblings(scone.encoded()),
                signature,
                tag,
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> ServiceId {
        ServiceId::new(name).unwrap()
    }

    #[test]
    fn a_different_key_with_a_trusted_key_id_is_refused_not_swapped_in() {
        let trusted = SigningKey::from_seed(&[1; 32]).public_key();
        let impostor = SigningKey::from_seed(&[2; 32])
            .public_key()
            .with_key_id(trusted.key_id());
        let mut ring = KeyRing::for_service(service("cart"), [trusted]).unwrap();
        for svc in ["cart", "billing"] {
            assert!(matches!(
                ring.trust(service(svc), impostor),
                Err(KeyError::KeyIdCollision(id)) if id == trusted.key_id()
            ));
        }
        assert_eq!(ring.get(trusted.key_id()), Some(&trusted));
        assert_eq!(ring.services(trusted.key_id()), [service("cart")]);
        assert!(matches!(
            KeyRing::for_service(service("cart"), [trusted, impostor]),
            Err(KeyError::KeyIdCollision(_))
        ));
        // The issuer's own key is refused the same way.
        let own = SigningKey::from_seed(&[3; 32]);
        let colliding = SigningKey::from_seed(&[4; 32])
            .public_key()
            .with_key_id(own.key_id());
        let ring = KeyRing::for_service(service("cart"), [colliding]).unwrap();
        assert!(matches!(
            Verifier::new(ring).trusting_own_tags(service("cart"), &own),
            Err(KeyError::KeyIdCollision(_))
        ));
    }

    #[test]
    fn scones_minted_together_cost_one_signature_check() {
        use crate::mint::{Draft, Minter};
        use crate::EndpointId;
        use std::num::NonZeroUsize;

        let key = SigningKey::from_seed(&[5; 32]);
        let cart = service("cart");
        let drafts: Vec<Draft> = (0..3u8)
            .map(|i| Draft::new(cart.clone(), EndpointId::from_bytes([i; 16])))
            .collect();
        let batch = Minter::new(key.clone()).mint_batch(&drafts).unwrap();
        let lone = Minter::new(key.clone())
            .mint(Draft::new(cart.clone(), EndpointId::from_bytes([9; 16])))
            .unwrap();
        let verifier =
            Verifier::new(KeyRing::for_service(cart.clone(), [key.public_key()]).unwrap());
        let roots = VerifiedRoots::new(NonZeroUsize::new(8).unwrap());

        let checks: Vec<SignatureCheck> = batch
            .iter()
            .map(|scone| verifier.verify_caching(scone, &roots).unwrap())
            .collect();
        assert_eq!(
            checks,
            [
                SignatureCheck::Checked,
                SignatureCheck::CachedRoot,
                SignatureCheck::CachedRoot
            ]
        );
        // Another root is checked on its own.
        assert_eq!(
            verifier.verify_caching(&lone, &roots).unwrap(),
            SignatureCheck::Checked
        );
        assert_eq!(roots.len(), 2);

        // A different signature over a cached root misses the cache and fails.
        let mut bytes = batch[1].encoded().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = Scone::decode(bytes).unwrap();
        assert!(matches!(
            verifier.verify_caching(&tampered, &roots),
            Err(VerifyError::BadSignature)
        ));
        // A key no longer trusted (or not for this service) is refused, cache or not.
        let other =
            Verifier::new(KeyRing::for_service(service("billing"), [key.public_key()]).unwrap());
        assert!(matches!(
            other.verify_caching(&batch[0], &roots),
            Err(VerifyError::KeyNotForService { .. })
        ));
        assert!(matches!(
            Verifier::new(KeyRing::new()).verify_caching(&batch[0], &roots),
            Err(VerifyError::UnknownKey(_))
        ));
        // The plain check is unchanged.
        batch
            .iter()
            .for_each(|scone| verifier.verify(scone).unwrap());
    }

    #[test]
    fn one_key_may_be_trusted_for_several_services_and_untrusted_for_one() {
        let key = SigningKey::from_seed(&[1; 32]).public_key();
        let mut ring = KeyRing::new();
        ring.trust(service("cart"), key).unwrap();
        ring.trust(service("billing"), key).unwrap();
        ring.trust(service("cart"), key).unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(
            ring.services(key.key_id()),
            [service("cart"), service("billing")]
        );
        assert_eq!(ring.get_for(&service("billing"), key.key_id()), Some(&key));
        assert_eq!(ring.get_for(&service("ledger"), key.key_id()), None);
        assert!(ring.untrust(&service("cart"), key.key_id()));
        assert!(!ring.untrust(&service("cart"), key.key_id()));
        assert_eq!(ring.get_for(&service("cart"), key.key_id()), None);
        assert!(ring.untrust(&service("billing"), key.key_id()));
        assert!(ring.is_empty());
    }
}
