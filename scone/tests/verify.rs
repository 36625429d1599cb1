//! Minting and verifying: round trips, every rejection, key rotation, batches and tags.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use scone::{
    DecodeError, Draft, EndpointId, KeyRing, ManualClock, Minter, MinterConfig, ObjectId,
    RejectReason, Scone, ServiceId, SigningKey, Status, Verifier, VerifierConfig, VerifyError,
};

const NOW_MS: u64 = 1_800_000_000_000;

fn cart() -> ServiceId {
    ServiceId::new("cart").unwrap()
}

fn endpoint(n: u8) -> EndpointId {
    EndpointId::from_bytes([n; 16])
}

struct Fixture {
    clock: Arc<ManualClock>,
    key: SigningKey,
    minter: Minter,
    verifier: Verifier,
}

fn fixture(seed: u8) -> Fixture {
    let clock = ManualClock::new(NOW_MS);
    let key = SigningKey::from_seed(&[seed; 32]);
    let minter = Minter::new(key.clone()).with_clock(clock.clone());
    let verifier = Verifier::new(KeyRing::for_service(cart(), [key.public_key()]).unwrap())
        .for_service(cart())
        .with_clock(clock.clone());
    Fixture {
        clock,
        key,
        minter,
        verifier,
    }
}

fn draft(state: &[u8]) -> Draft {
    Draft::new(cart(), endpoint(1)).with_state(state.to_vec())
}

#[test]
fn a_minted_scone_verifies_and_keeps_every_field() {
    let f = fixture(1);
    let scone = f
        .minter
        .mint(
            draft(b"two apples")
                .with_version(7)
                .with_status(Status::InProgress)
                .with_object(ObjectId(42))
                .with_ttl(Duration::from_secs(60)),
        )
        .unwrap();
    let back = f.verifier.decode(scone.encoded().clone()).unwrap();
    assert_eq!(back, scone);
    assert_eq!(back.service(), &cart());
    assert_eq!(back.endpoint(), endpoint(1));
    assert_eq!(back.object(), ObjectId(42));
    assert_eq!(back.status(), Status::InProgress);
    assert_eq!(back.version(), 7);
    assert_eq!(back.issued_at_ms(), NOW_MS);
    assert_eq!(back.expires_at_ms(), NOW_MS + 60_000);
    assert_eq!(back.key_id(), f.key.key_id());
    assert_eq!(back.state(), b"two apples");
    assert_eq!(back.format_version(), scone::FORMAT_VERSION);
}

#[test]
fn text_form_round_trips_and_is_url_safe() {
    let f = fixture(1);
    let scone = f.minter.mint(draft(&[0xff; 300])).unwrap();
    let text = scone.to_text();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(Scone::from_text(&text).unwrap(), scone);
    assert!(matches!(
        Scone::from_text("not*base64"),
        Err(DecodeError::Text(_))
    ));
}

#[test]
fn expired_scones_are_rejected_after_the_skew() {
    let f = fixture(1);
    let scone = f
        .minter
        .mint(draft(b"x").with_ttl(Duration::from_secs(10)))
        .unwrap();
    f.clock.advance(Duration::from_secs(10 + 29));
    assert!(f.verifier.verify(&scone).is_ok(), "within the 30 s skew");
    f.clock.advance(Duration::from_secs(1));
    let err = f.verifier.verify(&scone).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    assert_eq!(err.reason(), RejectReason::Expired);
}

#[test]
fn scones_from_the_future_are_rejected() {
    let f = fixture(1);
    let scone = f.minter.mint(draft(b"x")).unwrap();
    f.clock.set(NOW_MS - 31_000);
    assert!(matches!(
        f.verifier.verify(&scone),
        Err(VerifyError::NotYetValid { .. })
    ));
}

#[test]
fn scones_for_another_service_are_rejected() {
    let f = fixture(1);
    let billing = ServiceId::new("billing").unwrap();
    let scone = f
        .minter
        .mint(Draft::new(billing.clone(), endpoint(1)))
        .unwrap();
    match f.verifier.verify(&scone) {
        Err(VerifyError::WrongService { expected, found }) => {
            assert_eq!(expected, cart());
            assert_eq!(found, billing);
        }
        other => panic!("expected WrongService, got {other:?}"),
    }
}

#[test]
fn scones_signed_by_an_unknown_key_are_rejected() {
    let f = fixture(1);
    let stranger = fixture(2);
    let scone = stranger.minter.mint(draft(b"x")).unwrap();
    assert!(matches!(
        f.verifier.verify(&scone),
        Err(VerifyError::UnknownKey(id)) if id == stranger.key.key_id()
    ));
}

#[test]
fn oversize_scones_are_rejected_before_parsing() {
    let f = fixture(1);
    let ring = KeyRing::for_service(cart(), [f.key.public_key()]).unwrap();
    let small = Verifier::new(ring).with_config(VerifierConfig {
        max_scone_bytes: 512,
        ..VerifierConfig::default()
    });
    let scone = f.minter.mint(draft(&[1; 600])).unwrap();
    let err = small.decode(scone.encoded().clone()).unwrap_err();
    assert_eq!(err.reason(), RejectReason::TooLarge, "{err}");
    // Garbage of the same size is refused for its size, not parsed.
    let err = small.decode(vec![0xAB; 10_000]).unwrap_err();
    assert_eq!(err.reason(), RejectReason::TooLarge);
}

#[test]
fn the_minter_refuses_to_exceed_its_limit() {
    let f = fixture(1);
    let minter = f.minter.clone().with_config(MinterConfig {
        max_scone_bytes: 256,
        ..MinterConfig::default()
    });
    assert!(matches!(
        minter.mint(draft(&[0; 200])),
        Err(scone::MintError::TooLarge { limit: 256, .. })
    ));
    assert!(matches!(
        minter.mint(draft(&[0; 300])),
        Err(scone::MintError::TooLarge { limit: 256, .. })
    ));
}

#[test]
fn unsupported_versions_and_garbage_are_typed_errors() {
    let f = fixture(1);
    let mut bytes = f.minter.mint(draft(b"x")).unwrap().encoded().to_vec();
    bytes[0] = 2;
    assert!(matches!(
        f.verifier.decode(bytes),
        Err(VerifyError::Decode(DecodeError::UnsupportedVersion(2)))
    ));
    assert!(matches!(
        f.verifier.decode(Vec::new()),
        Err(VerifyError::Decode(DecodeError::Empty))
    ));
    let err = f.verifier.decode(vec![1, 0xff, 0xff]).unwrap_err();
    assert_eq!(err.reason(), RejectReason::Malformed);
}

#[test]
fn trailing_bytes_are_rejected() {
    let f = fixture(1);
    let mut bytes = f.minter.mint(draft(b"x")).unwrap().encoded().to_vec();
    bytes.push(0);
    assert!(matches!(
        Scone::decode(bytes),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn key_rotation_accepts_both_keys_until_the_old_one_is_removed() {
    let old = fixture(1);
    let new = fixture(2);
    let mut verifier = Verifier::new(
        KeyRing::for_service(cart(), [old.key.public_key(), new.key.public_key()]).unwrap(),
    )
    .with_clock(old.clock.clone());
    let by_old = old.minter.mint(draft(b"old")).unwrap();
    let by_new = new.minter.mint(draft(b"new")).unwrap();
    assert!(verifier.verify(&by_old).is_ok());
    assert!(verifier.verify(&by_new).is_ok());

    verifier.keys_mut().remove(old.key.key_id());
    assert!(matches!(
        verifier.verify(&by_old),
        Err(VerifyError::UnknownKey(_))
    ));
    assert!(verifier.verify(&by_new).is_ok());
}

#[test]
fn a_batch_shares_one_signature_and_each_member_verifies_alone() {
    let f = fixture(1);
    for n in [1usize, 2, 3, 8, 13] {
        let drafts: Vec<_> = (0..n)
            .map(|i| Draft::new(cart(), endpoint(i as u8)).with_state(vec![i as u8; 40]))
            .collect();
        let batch = f.minter.mint_batch(&drafts).unwrap();
        assert_eq!(batch.len(), n);
        for (i, scone) in batch.iter().enumerate() {
            let back = f.verifier.decode(scone.encoded().clone()).unwrap();
            assert_eq!(back.endpoint(), endpoint(i as u8));
            assert_eq!(back.state(), &[i as u8; 40][..]);
            assert_eq!(back.batch_size_bound(), n.next_power_of_two() as u64);
        }
    }
}

#[test]
fn a_batch_member_with_another_members_path_fails() {
    let f = fixture(1);
    let drafts: Vec<_> = (0..4).map(|i| Draft::new(cart(), endpoint(i))).collect();
    let batch = f.minter.mint_batch(&drafts).unwrap();
    // Graft member 1's claims onto member 0's seal: same signature, wrong path.
    let claims_len = |s: &Scone| s.encoded_len() - seal_len(s);
    let mut forged = batch[1].encoded()[..claims_len(&batch[1])].to_vec();
    forged.extend_from_slice(&batch[0].encoded()[claims_len(&batch[0])..]);
    let forged = Scone::decode(forged).expect("the graft is well-formed");
    assert_eq!(forged.endpoint(), endpoint(1));
    assert!(matches!(
        f.verifier.verify(&forged),
        Err(VerifyError::BadSignature)
    ));
}

/// The seal's encoded length (wire format v1) of a tagged SCONE: tag (option byte,
/// length byte, 32), index (one byte below 128), siblings (length byte, 32 per level),
/// signature (1 + 64).
fn seal_len(scone: &Scone) -> usize {
    let depth = scone.batch_size_bound().trailing_zeros() as usize;
    (1 + 1 + 32) + 1 + (1 + 32 * depth) + (1 + 64)
}

/// Where a tagged SCONE's tag, siblings and signature sit in its bytes (see `seal_len`).
fn tag_bytes(scone: &Scone) -> std::ops::Range<usize> {
    let start = scone.encoded_len() - seal_len(scone) + 2;
    start..start + 32
}

fn siblings_bytes(scone: &Scone) -> std::ops::Range<usize> {
    let depth = scone.batch_size_bound().trailing_zeros() as usize;
    let start = tag_bytes(scone).end + 1 + 1;
    start..start + 32 * depth
}

fn signature_bytes(scone: &Scone) -> std::ops::Range<usize> {
    scone.encoded_len() - 64..scone.encoded_len()
}

/// The issuer skips the signature check for its own SCONEs, yet accepts exactly what a
/// public verifier accepts: the signature and the Merkle path are covered by the tag, so
/// flipping a bit of any of their bytes makes both refuse. (One bit per byte, a different
/// one each time, to keep the test fast without optimisation; the property test above
/// flips any bit at random.)
#[test]
fn the_issuer_and_the_public_agree_on_every_bit_of_signature_and_path() {
    let f = fixture(1);
    let issuer = f
        .verifier
        .clone()
        .trusting_own_tags(cart(), &f.key)
        .unwrap();
    let drafts: Vec<_> = (0..5).map(|i| Draft::new(cart(), endpoint(i))).collect();
    let batch = f.minter.mint_batch(&drafts).unwrap();
    // A member with a left and a right turn (index 2 of 5, whose path also holds the
    // empty node), and one minted alone.
    for scone in [&batch[2], &f.minter.mint(draft(b"alone")).unwrap()] {
        assert!(scone.has_tag());
        assert!(issuer.verify(scone).is_ok() && f.verifier.verify(scone).is_ok());
        let (siblings, signature) = (siblings_bytes(scone), signature_bytes(scone));
        assert_eq!(
            signature.start,
            siblings.end + 1,
            "layout as `seal_len` says"
        );
        for byte in siblings.chain(signature) {
            let bit = byte % 8;
            let mut bytes = scone.encoded().to_vec();
            bytes[byte] ^= 1 << bit;
            let by_issuer = issuer.decode(bytes.clone());
            let by_public = f.verifier.decode(bytes);
            assert!(
                by_issuer.is_err() && by_public.is_err(),
                "byte {byte} bit {bit}: issuer {by_issuer:?}, public {by_public:?}"
            );
        }
    }
}

/// The tag is not under the signature: a wrong tag (or none) leaves a SCONE with a good
/// signature valid for everyone, the issuer checking its signature instead.
#[test]
fn a_wrong_or_missing_tag_with_a_good_signature_is_valid_for_both() {
    let f = fixture(1);
    let issuer = f
        .verifier
        .clone()
        .trusting_own_tags(cart(), &f.key)
        .unwrap();
    let scone = f.minter.mint(draft(b"tagged")).unwrap();
    let tag = tag_bytes(&scone);

    let mut wrong = scone.encoded().to_vec();
    wrong[tag.start + 7] ^= 0x10;
    assert!(issuer.decode(wrong.clone()).is_ok());
    assert!(f.verifier.decode(wrong).is_ok());

    // The option byte says "none" and the 33 bytes of the tag go.
    let mut stripped = scone.encoded().to_vec();
    assert_eq!(stripped[tag.start - 2], 1, "the tag's option byte");
    stripped.splice(tag.start - 2..tag.end, [0]);
    let stripped = Scone::decode(stripped).unwrap();
    assert!(!stripped.has_tag());
    assert!(issuer.verify(&stripped).is_ok());
    assert!(f.verifier.verify(&stripped).is_ok());

    // A good tag does not rescue bad claims.
    let mut tampered = scone.encoded().to_vec();
    let at = tampered.windows(6).position(|w| w == b"tagged").unwrap();
    tampered[at] = b'T';
    assert!(issuer.decode(tampered.clone()).is_err());
    assert!(f.verifier.decode(tampered).is_err());
}

#[test]
fn the_issuer_accepts_its_own_tag_and_still_rejects_tampered_claims() {
    let f = fixture(1);
    let issuer = f
        .verifier
        .clone()
        .trusting_own_tags(cart(), &f.key)
        .unwrap();
    let scone = f.minter.mint(draft(b"tagged")).unwrap();
    assert!(scone.has_tag());
    assert!(issuer.verify(&scone).is_ok());

    // Break the signature: the tag covers it, so the issuer refuses it just as a public
    // verifier does.
    let mut bytes = scone.encoded().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(
        issuer.decode(bytes.clone()),
        Err(VerifyError::BadSignature)
    ));
    assert!(f.verifier.decode(bytes).is_err());

    // Tamper with the state: tag and signature both fail.
    let mut bytes = scone.encoded().to_vec();
    let at = bytes.windows(6).position(|w| w == b"tagged").unwrap();
    bytes[at] = b'T';
    assert!(matches!(
        issuer.decode(bytes),
        Err(VerifyError::BadSignature)
    ));
}

#[test]
fn a_minter_without_tags_mints_scones_the_issuer_checks_by_signature() {
    let f = fixture(1);
    let untagged = f.minter.clone().with_config(MinterConfig {
        issuer_tag: false,
        ..MinterConfig::default()
    });
    let scone = untagged.mint(draft(b"x")).unwrap();
    assert!(!scone.has_tag());
    assert!(f
        .verifier
        .clone()
        .trusting_own_tags(cart(), &f.key)
        .unwrap()
        .verify(&scone)
        .is_ok());
}

#[test]
fn successor_bumps_the_version_of_the_same_session() {
    let f = fixture(1);
    let first = f.minter.mint(draft(b"a").with_object(ObjectId(3))).unwrap();
    let second = f.minter.mint(first.successor(b"ab".to_vec())).unwrap();
    assert_eq!(second.version(), first.version() + 1);
    assert_eq!(second.endpoint(), first.endpoint());
    assert_eq!(second.object(), ObjectId(3));
}

fn arb_draft() -> impl Strategy<Value = Draft> {
    (
        "[a-z][a-z0-9._-]{0,20}",
        any::<[u8; 16]>(),
        any::<u64>(),
        0usize..4,
        1u64..u64::MAX,
        1u64..1_000_000,
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(service, endpoint, object, status, version, ttl, state)| {
            Draft::new(
                ServiceId::new(service).unwrap(),
                EndpointId::from_bytes(endpoint),
            )
            .with_object(ObjectId(object))
            .with_status(Status::ALL[status])
            .with_version(version)
            .with_ttl(Duration::from_secs(ttl))
            .with_state(state)
        })
}

proptest! {
    // 128 cases by default; PROPTEST_CASES=N raises it for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128)
    ))]

    #[test]
    fn encode_decode_round_trips(draft in arb_draft()) {
        let f = fixture(1);
        let scone = f.minter.mint(draft.clone()).unwrap();
        let back = Scone::decode(scone.encoded().clone()).unwrap();
        prop_assert_eq!(&back, &scone);
        prop_assert_eq!(back.service(), &draft.service);
        prop_assert_eq!(back.state(), draft.state.as_slice());
        prop_assert_eq!(back.version(), draft.version);
        prop_assert_eq!(Scone::from_text(&scone.to_text()).unwrap(), scone);
        // Through serde (postcard), as it travels inside RPC messages.
        let wire = postcard::to_stdvec(&back).unwrap();
        prop_assert_eq!(postcard::from_bytes::<Scone>(&wire).unwrap(), back);
    }

    /// Any bit outside the issuer tag breaks the SCONE for the issuer and the public alike;
    /// a bit of the tag (not under the signature) breaks it for neither, the issuer falling
    /// back to the signature.
    #[test]
    fn flipping_any_single_bit_fails_verification(
        draft in arb_draft(),
        batch in 1usize..6,
        bit in any::<prop::sample::Index>(),
    ) {
        let f = fixture(1);
        let ring = KeyRing::for_service(draft.service.clone(), [f.key.public_key()]).unwrap();
        let public = Verifier::new(ring)
            .for_service(draft.service.clone())
            .with_clock(f.clock.clone());
        let issuer = public.clone().trusting_own_tags(draft.service.clone(), &f.key).unwrap();
        let scones = f.minter.mint_batch(&vec![draft; batch]).unwrap();
        let scone = &scones[batch - 1];
        prop_assert!(public.verify(scone).is_ok());
        prop_assert!(issuer.verify(scone).is_ok());
        let mut bytes = scone.encoded().to_vec();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let tag = tag_bytes(scone);
        let in_tag = tag.contains(&(bit / 8));
        let by_public = public.decode(bytes.clone()).is_ok();
        let by_issuer = issuer.decode(bytes).is_ok();
        prop_assert_eq!(by_public, in_tag, "bit {} (tag at {:?}): public verifier", bit, tag);
        prop_assert_eq!(by_issuer, in_tag, "bit {} (tag at {:?}): issuer", bit, tag);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Scone::decode(bytes.clone());
        let mut v1 = bytes;
        if let Some(first) = v1.first_mut() { *first = scone::FORMAT_VERSION; }
        let _ = Scone::decode(v1);
    }
}

#[test]
fn scones_signed_with_precomputed_nonces_verify_publicly() {
    let f = fixture(1);
    let minter = f.minter.clone().with_nonce_pool(16).unwrap();
    let single = minter.mint(draft(b"presigned")).unwrap();
    assert!(f.verifier.verify(&single).is_ok());
    let drafts: Vec<_> = (0..5).map(|i| Draft::new(cart(), endpoint(i))).collect();
    for scone in minter.mint_batch(&drafts).unwrap() {
        assert!(f.verifier.verify(&scone).is_ok());
    }
    // Same claims, fresh nonce: a different signature, equally valid.
    let again = minter.mint(draft(b"presigned")).unwrap();
    assert_ne!(again.encoded(), single.encoded());
    let mut tampered = single.encoded().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(f.verifier.decode(tampered).is_err());
}

#[test]
fn removing_the_issuers_key_revokes_its_tag_path_too() {
    let f = fixture(1);
    let mut issuer = f
        .verifier
        .clone()
        .trusting_own_tags(cart(), &f.key)
        .unwrap();
    let scone = f.minter.mint(draft(b"tagged")).unwrap();
    assert!(issuer.verify(&scone).is_ok());
    issuer.keys_mut().remove(f.key.key_id());
    assert!(matches!(
        issuer.verify(&scone),
        Err(VerifyError::UnknownKey(_))
    ));
}

#[test]
fn an_overlong_varint_in_the_seal_is_refused() {
    let f = fixture(1);
    let scone = f.minter.mint(draft(b"x")).unwrap();
    // The seal starts after the claims: tag (1 + 1 + 32), then the index varint, 0x00.
    let seal_start = scone.encoded_len() - seal_len(&scone);
    let index_at = seal_start + 34;
    let mut bytes = scone.encoded().to_vec();
    assert_eq!(bytes[index_at], 0x00);
    // 0x80 0x00 is an overlong encoding of 0 that postcard itself would accept.
    bytes.splice(index_at..=index_at, [0x80, 0x00]);
    assert!(matches!(
        Scone::decode(bytes),
        Err(DecodeError::Malformed(_))
    ));
}
