//! The trust model: keys bound to services, and a cap on the lifetime a verifier accepts.

use std::sync::Arc;
use std::time::Duration;

use scone::{
    Draft, EndpointId, KeyRing, ManualClock, Minter, RejectReason, ServiceId, SigningKey, Verifier,
    VerifierConfig, VerifyError,
};

const NOW_MS: u64 = 1_800_000_000_000;

fn service(name: &str) -> ServiceId {
    ServiceId::new(name).unwrap()
}

fn minter(key: &SigningKey, clock: &Arc<ManualClock>) -> Minter {
    Minter::new(key.clone()).with_clock(clock.clone())
}

fn draft(service_name: &str) -> Draft {
    Draft::new(service(service_name), EndpointId::from_bytes([1; 16])).with_state(*b"state")
}

/// A relay (or any verifier serving several services) trusts `cart`'s key and
/// `billing`'s key: each still vouches only for its own service.
#[test]
fn one_services_key_cannot_sign_for_another_service() {
    let clock = ManualClock::new(NOW_MS);
    let (cart_key, billing_key) = (
        SigningKey::from_seed(&[1; 32]),
        SigningKey::from_seed(&[2; 32]),
    );
    let mut ring = KeyRing::new();
    ring.trust(service("cart"), cart_key.public_key()).unwrap();
    ring.trust(service("billing"), billing_key.public_key())
        .unwrap();
    let relay = Verifier::new(ring).with_clock(clock.clone());
    let billing = relay.clone().for_service(service("billing"));

    let genuine = minter(&billing_key, &clock).mint(draft("billing")).unwrap();
    assert!(relay.verify(&genuine).is_ok());
    assert!(billing.verify(&genuine).is_ok());
    let own = minter(&cart_key, &clock).mint(draft("cart")).unwrap();
    assert!(relay.verify(&own).is_ok());

    // cart's server (or whoever holds its key) mints a SCONE for billing.
    let forged = minter(&cart_key, &clock).mint(draft("billing")).unwrap();
    for verifier in [&relay, &billing] {
        let error = verifier.verify(&forged).unwrap_err();
        assert!(
            matches!(
                &error,
                VerifyError::KeyNotForService { key_id, service: s }
                    if *key_id == cart_key.key_id() && *s == service("billing")
            ),
            "{error}"
        );
        assert_eq!(error.reason(), RejectReason::UnknownKey);
    }
}

/// The issuing server's tag path is bound the same way: its own key, minting for another
/// service, gets no shortcut and no signature check either.
#[test]
fn the_issuers_own_key_is_bound_to_its_service() {
    let clock = ManualClock::new(NOW_MS);
    let key = SigningKey::from_seed(&[1; 32]);
    let issuer = Verifier::new(KeyRing::new())
        .with_clock(clock.clone())
        .trusting_own_tags(service("cart"), &key)
        .unwrap();
    let minter = minter(&key, &clock);
    assert!(issuer.verify(&minter.mint(draft("cart")).unwrap()).is_ok());
    let elsewhere = minter.mint(draft("billing")).unwrap();
    assert!(elsewhere.has_tag());
    assert!(matches!(
        issuer.verify(&elsewhere),
        Err(VerifyError::KeyNotForService { .. })
    ));
}

#[test]
fn a_verifier_can_cap_the_lifetime_it_accepts() {
    let clock = ManualClock::new(NOW_MS);
    let key = SigningKey::from_seed(&[1; 32]);
    let ring = KeyRing::for_service(service("cart"), [key.public_key()]).unwrap();
    let capped = |max_ttl| {
        Verifier::new(ring.clone())
            .with_clock(clock.clone())
            .with_config(VerifierConfig {
                max_ttl,
                ..VerifierConfig::default()
            })
    };
    let minter = minter(&key, &clock);
    let hour = minter
        .mint(draft("cart").with_ttl(Duration::from_secs(3600)))
        .unwrap();

    assert!(capped(None).verify(&hour).is_ok(), "no cap by default");
    assert!(capped(Some(Duration::from_secs(3600)))
        .verify(&hour)
        .is_ok());
    let error = capped(Some(Duration::from_secs(3599)))
        .verify(&hour)
        .unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::LifetimeTooLong {
                lifetime_ms: 3_600_000,
                max_ttl_ms: 3_599_000
            }
        ),
        "{error}"
    );
    assert_eq!(error.reason(), RejectReason::LifetimeTooLong);
    // The lifetime counts from issue, not from now: a long-lived SCONE near its end is
    // still refused.
    clock.advance(Duration::from_secs(3500));
    assert!(capped(Some(Duration::from_secs(600)))
        .verify(&hour)
        .is_err());
    assert!(VerifierConfig::default().max_ttl.is_none());
}
