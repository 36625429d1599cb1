//! Sealed state: round trips, every way a sealed state fails to open (as a typed error),
//! public verification of sealed SCONEs, and handlers reading the opened state.

use proptest::prelude::*;
use scone::context::{self, SconeContext, Written};
use scone::sealed::{SealBinding, SealedError, StateSealer, SEALED_OVERHEAD};
use scone::{
    Draft, EndpointId, KeyRing, Minter, ObjectId, Scone, SconeBundle, ServiceId, SigningKey,
    StateFormat, Verifier,
};

fn cart() -> ServiceId {
    ServiceId::new("cart").unwrap()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn binding(service: &ServiceId) -> SealBinding<'_> {
    SealBinding {
        service,
        endpoint: EndpointId::from_bytes([1; 16]),
        object: ObjectId(0),
        version: 1,
    }
}

/// A SCONE for `cart`, endpoint `session`, whose state `plaintext` is sealed.
fn sealed_scone(key: &SigningKey, session: u8, plaintext: &[u8]) -> Scone {
    let mut draft =
        Draft::new(cart(), EndpointId::from_bytes([session; 16])).with_state(plaintext.to_vec());
    StateSealer::new(key).seal_draft(&mut draft).unwrap();
    Minter::new(key.clone()).mint(draft).unwrap()
}

fn bundle_of(scone: Scone) -> SconeBundle {
    let mut bundle = SconeBundle::new();
    bundle.insert(scone).unwrap();
    bundle
}

#[test]
fn a_sealed_state_opens_to_what_was_sealed_and_hides_it() {
    let sealer = StateSealer::new(&key(1));
    let service = cart();
    let plaintext = b"two apples and a secret discount code";
    let sealed = sealer.seal(&binding(&service), plaintext).unwrap();
    assert_eq!(sealed.len(), plaintext.len() + SEALED_OVERHEAD);
    assert!(
        !sealed.windows(6).any(|w| w == b"apples"),
        "the plaintext shows through"
    );
    assert_eq!(sealer.open(&binding(&service), &sealed).unwrap(), plaintext);
    // A fresh nonce each time: the same state never seals to the same bytes.
    let again = sealer.seal(&binding(&service), plaintext).unwrap();
    assert_ne!(again, sealed);
    assert_eq!(sealer.open(&binding(&service), &again).unwrap(), plaintext);
}

#[test]
fn an_empty_state_seals_too() {
    let sealer = StateSealer::new(&key(1));
    let service = cart();
    let sealed = sealer.seal(&binding(&service), b"").unwrap();
    assert_eq!(sealed.len(), SEALED_OVERHEAD);
    assert_eq!(sealer.open(&binding(&service), &sealed).unwrap(), b"");
}

#[test]
fn every_server_of_the_service_opens_what_any_of_them_sealed() {
    let scone = sealed_scone(&key(1), 1, b"apple");
    // Another process, the same key file: the sealing key is derived, not stored.
    let other_server =
        StateSealer::new(&SigningKey::from_file_text(&key(1).to_file_text()).unwrap());
    assert_eq!(other_server.open_scone(&scone).unwrap(), b"apple");
}

#[test]
fn another_key_does_not_open() {
    let service = cart();
    let sealed = StateSealer::new(&key(1))
        .seal(&binding(&service), b"apple")
        .unwrap();
    assert!(matches!(
        StateSealer::new(&key(2)).open(&binding(&service), &sealed),
        Err(SealedError::Open)
    ));
    // By SCONE: the signing key's ID picks the sealing key; one the sealer lacks is named.
    let scone = sealed_scone(&key(1), 1, b"apple");
    match StateSealer::new(&key(2)).open_scone(&scone) {
        Err(SealedError::UnknownKey(id)) => assert_eq!(id, key(1).key_id()),
        other => panic!("expected an unknown key, got {other:?}"),
    }
}

#[test]
fn after_a_rotation_the_older_key_still_opens_but_no_longer_seals() {
    let old = sealed_scone(&key(1), 1, b"before");
    let sealer = StateSealer::new(&key(2)).with_older_key(&key(1));
    assert_eq!(sealer.key_id(), key(2).key_id());
    assert_eq!(sealer.open_scone(&old).unwrap(), b"before");
    let service = cart();
    let sealed = sealer.seal(&binding(&service), b"after").unwrap();
    assert!(StateSealer::new(&key(1))
        .open(&binding(&service), &sealed)
        .is_err());
    assert_eq!(
        StateSealer::new(&key(2))
            .open(&binding(&service), &sealed)
            .unwrap(),
        b"after"
    );
}

#[test]
fn a_tampered_byte_anywhere_fails_to_open() {
    let sealer = StateSealer::new(&key(1));
    let service = cart();
    let sealed = sealer.seal(&binding(&service), b"apple, pear").unwrap();
    // Nonce, ciphertext and tag alike.
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x01;
        assert!(
            matches!(
                sealer.open(&binding(&service), &tampered),
                Err(SealedError::Open)
            ),
            "byte {i}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(
        sealer.open(&binding(&service), &longer),
        Err(SealedError::Open)
    ));
}

#[test]
fn a_truncated_state_is_a_typed_error() {
    let sealer = StateSealer::new(&key(1));
    let service = cart();
    let sealed = sealer.seal(&binding(&service), b"apple").unwrap();
    for len in 0..sealed.len() {
        let result = sealer.open(&binding(&service), &sealed[..len]);
        if len < SEALED_OVERHEAD {
            assert!(
                matches!(result, Err(SealedError::Truncated { len: l }) if l == len),
                "{len} bytes"
            );
        } else {
            assert!(matches!(result, Err(SealedError::Open)), "{len} bytes");
        }
    }
}

#[test]
fn a_state_sealed_for_one_scone_does_not_open_as_another() {
    let sealer = StateSealer::new(&key(1));
    let service = cart();
    let base = binding(&service);
    let sealed = sealer.seal(&base, b"apple").unwrap();
    let billing = ServiceId::new("billing").unwrap();
    for other in [
        SealBinding {
            service: &billing,
            ..base
        },
        SealBinding {
            endpoint: EndpointId::from_bytes([2; 16]),
            ..base
        },
        SealBinding {
            object: ObjectId(1),
            ..base
        },
        SealBinding { version: 2, ..base },
    ] {
        assert!(
            matches!(sealer.open(&other, &sealed), Err(SealedError::Open)),
            "{other:?}"
        );
    }
}

#[test]
fn a_sealed_state_minted_into_another_session_does_not_open() {
    let key = key(1);
    let theirs = sealed_scone(&key, 1, b"alice's cart");
    // The service itself, led to mint Alice's sealed bytes into Bob's session.
    let bob = Minter::new(key.clone())
        .mint(
            Draft::new(cart(), EndpointId::from_bytes([2; 16]))
                .with_state(theirs.state().to_vec())
                .with_sealed(true),
        )
        .unwrap();
    assert!(matches!(
        StateSealer::new(&key).open_scone(&bob),
        Err(SealedError::Open)
    ));
}

#[test]
fn an_unsealed_state_does_not_open() {
    let key = key(1);
    let state = b"a plain state, long enough for a nonce and a tag".to_vec();
    let plain = Minter::new(key.clone())
        .mint(Draft::new(cart(), EndpointId::from_bytes([1; 16])).with_state(state.clone()))
        .unwrap();
    assert!(!plain.is_sealed());
    // Its claims say it is not sealed: refused without an attempt to decrypt.
    assert!(matches!(
        StateSealer::new(&key).open_scone(&plain),
        Err(SealedError::NotSealed)
    ));
    // Claimed sealed, but not: it does not open.
    let claimed = Minter::new(key.clone())
        .mint(
            Draft::new(cart(), EndpointId::from_bytes([1; 16]))
                .with_state(state)
                .with_sealed(true),
        )
        .unwrap();
    assert!(matches!(
        StateSealer::new(&key).open_scone(&claimed),
        Err(SealedError::Open)
    ));
}

#[test]
fn the_sealed_flag_and_state_format_are_signed_claims_that_round_trip() {
    let key = key(1);
    let mut draft = Draft::new(cart(), EndpointId::from_bytes([1; 16]))
        .with_state(b"{\"items\":[]}".to_vec())
        .with_state_format(StateFormat::Json);
    assert!(!draft.sealed, "a draft is not sealed until sealed");
    StateSealer::new(&key).seal_draft(&mut draft).unwrap();
    assert!(draft.sealed);
    assert_eq!(
        draft.state_format,
        StateFormat::Json,
        "the plaintext's format"
    );
    let scone = Minter::new(key.clone()).mint(draft).unwrap();
    let back = Scone::decode(scone.encoded().clone()).unwrap();
    assert!(back.is_sealed());
    assert_eq!(back.state_format(), StateFormat::Json);
    // The successor keeps both, and sealing it again keeps it sealed.
    let next = back.successor(b"{}".to_vec());
    assert!(next.sealed);
    assert_eq!(next.state_format, StateFormat::Json);
    // The flag is under the signature: clearing it breaks the SCONE.
    let verifier = Verifier::new(KeyRing::for_service(cart(), [key.public_key()]).unwrap())
        .for_service(cart());
    assert!(verifier.verify(&back).is_ok());
    let claims_end = scone.encoded().len() - scone_seal_len(&scone);
    let flag_at = claims_end - scone.state().len() - 2;
    let mut cleared = scone.encoded().to_vec();
    assert_eq!(
        cleared[flag_at], 1,
        "the sealed flag sits before the state's length"
    );
    cleared[flag_at] = 0;
    let cleared = Scone::decode(cleared).unwrap();
    assert!(!cleared.is_sealed());
    assert!(verifier.verify(&cleared).is_err());
}

/// The length of a tagged, lone SCONE's seal: tag, index, no siblings, signature.
fn scone_seal_len(scone: &Scone) -> usize {
    assert!(scone.has_tag() && scone.batch_size_bound() == 1);
    (1 + 1 + 32) + 1 + 1 + (1 + 64)
}

#[test]
fn a_public_verifier_checks_a_sealed_scone_without_reading_it() {
    let key = key(1);
    let scone = sealed_scone(&key, 1, b"apple");
    let verifier = Verifier::new(KeyRing::for_service(cart(), [key.public_key()]).unwrap())
        .for_service(cart());
    let back = verifier.decode(scone.encoded().clone()).unwrap();
    // The claims stay readable; the state is ciphertext.
    assert_eq!(back.service(), &cart());
    assert_eq!(back.endpoint(), EndpointId::from_bytes([1; 16]));
    assert_eq!(back.version(), 1);
    assert_eq!(back.state().len(), b"apple".len() + SEALED_OVERHEAD);
    assert_ne!(back.state(), b"apple");
    // The signature covers the ciphertext: changing any byte of it breaks the signature.
    let encoded = scone.encoded();
    let start = encoded
        .windows(scone.state().len())
        .position(|w| w == scone.state())
        .unwrap();
    for i in start..start + scone.state().len() {
        let mut tampered = encoded.to_vec();
        tampered[i] ^= 1;
        assert!(verifier.decode(tampered).is_err(), "byte {i}");
    }
}

#[tokio::test]
async fn a_handler_reads_the_opened_state_and_writes_plaintext() {
    let key = key(1);
    let sealer = StateSealer::new(&key);
    let incoming = sealed_scone(&key, 1, b"apple");
    let mut ctx = SconeContext::new(bundle_of(incoming.clone()));
    assert!(ctx.open_incoming(&cart(), &sealer).unwrap());
    assert!(ctx.is_opened(&cart()));
    assert_eq!(ctx.incoming_state(&cart()), Some(&b"apple"[..]));

    let (read, ctx) = context::scope(ctx, async {
        let read = context::incoming_state(&cart()).unwrap().unwrap();
        // The SCONE itself still carries the ciphertext.
        let scone = context::incoming(&cart()).unwrap().unwrap();
        assert_ne!(scone.state(), b"apple");
        tokio::task::yield_now().await;
        // Writing back what was read is no change, though it differs from the ciphertext.
        assert_eq!(
            context::write_state(&cart(), read.clone()),
            Ok(Written::Unchanged)
        );
        assert_eq!(
            context::write_state(&cart(), b"apple,pear".to_vec()),
            Ok(Written::Changed)
        );
        read
    })
    .await;
    assert_eq!(read, b"apple");
    assert_eq!(ctx.writes()[0].state, b"apple,pear");

    // What the server does next: seal the successor and mint it.
    let (incoming_bundle, mut writes, _) = ctx.into_parts();
    let write = writes.next().unwrap();
    let mut draft = incoming_bundle.get(&cart()).unwrap().successor(write.state);
    sealer.seal_draft(&mut draft).unwrap();
    let next = Minter::new(key.clone()).mint(draft).unwrap();
    assert_eq!(next.version(), 2);
    assert_eq!(sealer.open_scone(&next).unwrap(), b"apple,pear");
    // The sealed state of version 1 is not that of version 2.
    assert!(StateSealer::new(&key)
        .open(&SealBinding::of_scone(&next), incoming.state())
        .is_err());
}

#[test]
fn opening_without_an_incoming_scone_is_a_new_session() {
    let mut ctx = SconeContext::default();
    assert!(!ctx
        .open_incoming(&cart(), &StateSealer::new(&key(1)))
        .unwrap());
    let (state, _) = context::sync_scope(ctx, || context::incoming_state(&cart()).unwrap());
    assert_eq!(state, None);
}

#[test]
fn a_state_that_does_not_open_leaves_the_context_unopened() {
    let plain = Minter::new(key(1))
        .mint(Draft::new(cart(), EndpointId::from_bytes([1; 16])).with_state(b"plain".to_vec()))
        .unwrap();
    let mut ctx = SconeContext::new(bundle_of(plain));
    assert!(matches!(
        ctx.open_incoming(&cart(), &StateSealer::new(&key(1))),
        Err(SealedError::NotSealed)
    ));
    assert!(!ctx.is_opened(&cart()));
    // An unsealed service reads the state as it is, as before.
    assert_eq!(ctx.incoming_state(&cart()), Some(&b"plain"[..]));
}

#[test]
fn the_opened_state_is_not_in_debug_output() {
    let key = key(1);
    let ctx = SconeContext::new(bundle_of(sealed_scone(&key, 1, b"hunter2")))
        .with_opened(&cart(), b"hunter2".to_vec());
    let ((), ctx) = context::sync_scope(ctx, || {
        context::write_state(&cart(), b"hunter3".to_vec()).unwrap();
    });
    let shown = format!("{ctx:?}");
    assert!(!shown.contains("104, 117, 110"), "{shown}"); // "hun" as bytes
}

proptest! {
    #[test]
    fn any_state_round_trips_and_any_bit_flip_fails(
        state in proptest::collection::vec(any::<u8>(), 0..300),
        version in any::<u64>(),
        object in any::<u64>(),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let sealer = StateSealer::new(&key(3));
        let service = cart();
        let binding = SealBinding { object: ObjectId(object), version, ..binding(&service) };
        let sealed = sealer.seal(&binding, &state).unwrap();
        prop_assert_eq!(sealer.open(&binding, &sealed).unwrap(), state);
        let mut flipped = sealed;
        let i = flip.index(flipped.len());
        flipped[i] ^= 1 << bit;
        prop_assert!(matches!(sealer.open(&binding, &flipped), Err(SealedError::Open)));
    }
}
