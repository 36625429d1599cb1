//! Bundles: one SCONE per service, bounded count and bytes, safe decoding.

use scone::{
    BundleError, BundleLimits, Draft, EndpointId, Minter, Scone, SconeBundle, ServiceId, SigningKey,
};

fn mint(service: &str, state_len: usize) -> Scone {
    Minter::new(SigningKey::from_seed(&[3; 32]))
        .mint(
            Draft::new(
                ServiceId::new(service).unwrap(),
                EndpointId::from_bytes([1; 16]),
            )
            .with_state(vec![7; state_len]),
        )
        .unwrap()
}

#[test]
fn one_scone_per_service_replacing_the_old_one() {
    let mut bundle = SconeBundle::new();
    assert_eq!(bundle.insert(mint("front", 1)), Ok(None));
    assert_eq!(bundle.insert(mint("back", 1)), Ok(None));
    let newer = mint("front", 2);
    let replaced = bundle.insert(newer.clone()).unwrap().unwrap();
    assert_eq!(replaced.state(), &[7]);
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle.get(newer.service()), Some(&newer));
}

#[test]
fn limits_on_count_and_bytes_leave_the_bundle_unchanged() {
    let limits = BundleLimits {
        max_scones: 2,
        max_bytes: 1000,
    };
    let mut bundle = SconeBundle::with_limits(limits);
    bundle.insert(mint("a", 10)).unwrap();
    bundle.insert(mint("b", 10)).unwrap();
    assert_eq!(
        bundle.insert(mint("c", 10)),
        Err(BundleError::TooManyScones { limit: 2 })
    );
    assert!(matches!(
        bundle.insert(mint("a", 2000)),
        Err(BundleError::TooLarge { limit: 1000, .. })
    ));
    assert_eq!(bundle.len(), 2);
    assert_eq!(
        bundle
            .get(&ServiceId::new("a").unwrap())
            .unwrap()
            .state()
            .len(),
        10
    );
}

#[test]
fn bundles_round_trip_through_postcard() {
    let mut bundle = SconeBundle::new();
    bundle.insert(mint("front", 100)).unwrap();
    bundle.insert(mint("back", 300)).unwrap();
    let wire = postcard::to_stdvec(&bundle).unwrap();
    assert_eq!(postcard::from_bytes::<SconeBundle>(&wire).unwrap(), bundle);
}

#[test]
fn decoding_refuses_duplicates_and_oversize_bundles() {
    let twice = vec![mint("front", 1), mint("front", 2)];
    let wire = postcard::to_stdvec(&twice).unwrap();
    let err = postcard::from_bytes::<SconeBundle>(&wire).unwrap_err();
    assert!(matches!(err, postcard::Error::SerdeDeCustom));

    let many: Vec<_> = (0..17).map(|i| mint(&format!("s{i}"), 1)).collect();
    let wire = postcard::to_stdvec(&many).unwrap();
    assert!(postcard::from_bytes::<SconeBundle>(&wire).is_err());

    // A length prefix claiming a billion entries fails on the data, without allocating.
    let hostile = [0xff, 0xff, 0xff, 0xff, 0x03];
    assert!(postcard::from_bytes::<SconeBundle>(&hostile).is_err());
}
