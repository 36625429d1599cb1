//! `#[derive(SconeState)]`: typed load and save through the context, per-field change
//! tracking, deltas, and typed errors.

use std::collections::BTreeMap;

use scone::context::{self, SconeContext};
use scone::{Draft, EndpointId, Minter, SconeBundle, ServiceId, SigningKey};
use scone_rpc::state::{Delta, Saved, SconeState, StateError};
use serde::{Deserialize, Serialize};

#[derive(SconeState, Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[scone(service = "cart")]
pub struct Cart {
    pub items: BTreeMap<String, u32>,
    pub coupon: Option<String>,
    pub visits: u64,
}

fn with_state(cart: &Cart) -> SconeContext {
    with_state_bytes(postcard::to_stdvec(cart).unwrap())
}

/// A request context carrying a cart SCONE whose state is `state`.
fn with_state_bytes(state: Vec<u8>) -> SconeContext {
    let scone = Minter::new(SigningKey::from_seed(&[1; 32]))
        .mint(
            Draft::new(
                ServiceId::new("cart").unwrap(),
                EndpointId::from_bytes([1; 16]),
            )
            .with_state(state),
        )
        .unwrap();
    let mut bundle = SconeBundle::new();
    bundle.insert(scone).unwrap();
    SconeContext::new(bundle)
}

fn sample() -> Cart {
    Cart {
        items: BTreeMap::from([("apple".to_owned(), 2)]),
        coupon: None,
        visits: 7,
    }
}

#[test]
fn the_derive_names_the_service_and_fields() {
    assert_eq!(Cart::SERVICE, "cart");
    assert_eq!(Cart::FIELDS, ["items", "coupon", "visits"]);
}

#[test]
fn a_new_session_loads_the_default() {
    let ((), _) = context::sync_scope(SconeContext::default(), || {
        let cart = Cart::load().unwrap();
        assert!(!cart.tracker().is_loaded());
        assert_eq!(*cart, Cart::default());
    });
}

#[test]
fn reading_only_is_no_change_and_writes_nothing() {
    let (saved, ctx) = context::sync_scope(with_state(&sample()), || {
        let cart = Cart::load().unwrap();
        assert!(cart.tracker().is_loaded());
        assert_eq!(cart.visits, 7);
        cart.save().unwrap()
    });
    assert_eq!(saved, Saved::Unchanged);
    assert!(ctx.writes().is_empty());
}

#[test]
fn a_field_borrowed_mutably_but_left_equal_is_no_change() {
    let (saved, ctx) = context::sync_scope(with_state(&sample()), || {
        let mut cart = Cart::load().unwrap();
        cart.items_mut().insert("apple".into(), 2);
        *cart.visits_mut() += 0;
        assert!(cart.delta().unwrap().is_empty());
        cart.save().unwrap()
    });
    assert_eq!(saved, Saved::Unchanged);
    assert!(ctx.writes().is_empty(), "not re-signed");
}

#[test]
fn only_the_changed_fields_form_the_delta() {
    let (delta, ctx) = context::sync_scope(with_state(&sample()), || {
        let mut cart = Cart::load().unwrap();
        *cart.visits_mut() += 1;
        let _ = cart.items_mut().get("apple").copied(); // borrowed, unchanged
        let delta = cart.delta().unwrap();
        match cart.save().unwrap() {
            Saved::Changed(fields) => {
                assert_eq!(fields.names().collect::<Vec<_>>(), ["visits"]);
                assert_eq!(fields.indices(), [2]);
                assert!(fields.contains("visits") && !fields.contains("items"));
                assert_eq!(format!("{fields:?}"), r#"["visits"]"#);
            }
            Saved::Unchanged => panic!("visits changed"),
        }
        delta
    });
    assert_eq!(delta.fields.len(), 1);
    assert_eq!(delta.fields[0].index, 2);

    // The full new state was written back for minting.
    let written: Cart = postcard::from_bytes(&ctx.writes()[0].state).unwrap();
    assert_eq!(written.visits, 8);
    assert_eq!(written.items, sample().items);

    // Applying the delta to the old version gives the new one.
    let mut old = sample();
    delta.apply(&mut old).unwrap();
    assert_eq!(old, written);
}

#[test]
fn deltas_travel_and_reject_unknown_fields() {
    let delta = Delta {
        fields: vec![scone_rpc::state::FieldDelta {
            index: 9,
            value: vec![1],
        }],
    };
    let wire = postcard::to_stdvec(&delta).unwrap();
    let back: Delta = postcard::from_bytes(&wire).unwrap();
    assert!(matches!(
        back.apply(&mut Cart::default()),
        Err(StateError::UnknownField(9))
    ));
    let garbled = Delta {
        fields: vec![scone_rpc::state::FieldDelta {
            index: 2,
            value: vec![],
        }],
    };
    assert!(matches!(
        garbled.apply(&mut Cart::default()),
        Err(StateError::FieldDecode {
            field: "visits",
            ..
        })
    ));
}

#[test]
fn a_state_of_another_shape_is_a_typed_error() {
    #[derive(Serialize)]
    struct Other {
        text: String,
    }
    let state = postcard::to_stdvec(&Other {
        text: "x".repeat(3),
    })
    .unwrap();
    let (result, _) = context::sync_scope(with_state_bytes(state), Cart::load);
    assert!(matches!(result, Err(StateError::Decode { .. })));
}

#[test]
fn loading_outside_a_request_is_a_typed_error() {
    assert!(matches!(Cart::load(), Err(StateError::Context(_))));
}

#[test]
fn compile_errors_are_clear() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
