//! `#[derive(SconeState)]`: typed load and save through the context, per-field change
//! tracking, deltas, state formats, and typed errors.

use std::collections::BTreeMap;

use scone::context::{self, SconeContext};
use scone::sealed::StateSealer;
use scone::{Draft, EndpointId, Minter, SconeBundle, ServiceId, SigningKey, StateFormat};
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

/// A request context carrying a cart SCONE whose state is `state`, in postcard.
fn with_state_bytes(state: Vec<u8>) -> SconeContext {
    with_state_as("cart", state, StateFormat::Postcard)
}

/// A request context carrying a SCONE of `service` whose state is `state`, tagged `format`.
fn with_state_as(service: &str, state: Vec<u8>, format: StateFormat) -> SconeContext {
    context_of(draft(service, state).with_state_format(format))
}

fn draft(service: &str, state: Vec<u8>) -> Draft {
    Draft::new(
        ServiceId::new(service).unwrap(),
        EndpointId::from_bytes([1; 16]),
    )
    .with_state(state)
}

fn context_of(draft: Draft) -> SconeContext {
    let scone = Minter::new(SigningKey::from_seed(&[1; 32]))
        .mint(draft)
        .unwrap();
    let mut bundle = SconeBundle::new();
    bundle.insert(scone).unwrap();
    SconeContext::new(bundle)
}

/// A state of two small numbers: the shape a JSON document misread as postcard fits.
#[derive(SconeState, Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[scone(service = "counter")]
pub struct Counter {
    pub count: u32,
    pub limit: u32,
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

/// Only `setAttribute` marks a change (spring-session #311): a value changed in place
/// through a reference, with no call that sets it again, would not be saved. Here the
/// only way to change a field is its `_mut` borrow, and any change through it is saved.
#[test]
fn a_value_changed_in_place_inside_a_field_is_saved() {
    let (saved, ctx) = context::sync_scope(with_state(&sample()), || {
        let mut cart = Cart::load().unwrap();
        let items = cart.items_mut();
        if let Some(quantity) = items.get_mut("apple") {
            *quantity += 1;
        }
        cart.save().unwrap()
    });
    match saved {
        Saved::Changed(fields) => assert_eq!(fields.names().collect::<Vec<_>>(), ["items"]),
        Saved::Unchanged => panic!("the in-place change was not seen"),
    }
    let written: Cart = postcard::from_bytes(&ctx.writes()[0].state).unwrap();
    assert_eq!(written.items["apple"], sample().items["apple"] + 1);
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
fn a_json_state_minted_like_the_cli_loads_with_its_values_and_saves_as_postcard() {
    // What `scone mint --service counter --data '{"count":5,"limit":9}'` mints.
    let json = br#"{"count":5,"limit":9}"#.to_vec();
    // Read as postcard, as a derived type once did, this JSON is two small numbers
    // (`{` and `"`), and no error: the bug this test guards against.
    let misread: Counter = postcard::from_bytes(&json).unwrap();
    assert_eq!((misread.count, misread.limit), (123, 34));

    let ctx = with_state_as("counter", json, StateFormat::Json);
    let (saved, ctx) = context::sync_scope(ctx, || {
        let mut counter = Counter::load().unwrap();
        assert!(counter.tracker().is_loaded());
        assert_eq!((counter.count, counter.limit), (5, 9));
        *counter.count_mut() += 1;
        counter.save().unwrap()
    });
    assert!(matches!(saved, Saved::Changed(_)));
    // Saved back as postcard, and tagged so.
    let write = &ctx.writes()[0];
    assert_eq!(write.format, StateFormat::Postcard);
    let written: Counter = postcard::from_bytes(&write.state).unwrap();
    assert_eq!(written, Counter { count: 6, limit: 9 });
}

#[test]
fn an_opaque_state_is_a_typed_error_not_garbage() {
    // Postcard bytes, but minted untagged (as `context::write_state` writes): not read.
    let state = postcard::to_stdvec(&Counter { count: 5, limit: 9 }).unwrap();
    let ctx = with_state_as("counter", state, StateFormat::Opaque);
    let (result, _) = context::sync_scope(ctx, Counter::load);
    match result {
        Err(StateError::WrongFormat {
            service,
            expected,
            found,
        }) => {
            assert_eq!(service.as_str(), "counter");
            assert_eq!(
                (expected, found),
                (StateFormat::Postcard, StateFormat::Opaque)
            );
        }
        other => panic!("expected a wrong format, got {:?}", other.err()),
    }
}

#[test]
fn json_of_another_shape_is_a_typed_error() {
    let ctx = with_state_as(
        "counter",
        br#"{"count":"five"}"#.to_vec(),
        StateFormat::Json,
    );
    let (result, _) = context::sync_scope(ctx, Counter::load);
    let error = result.err();
    assert!(
        matches!(error, Some(StateError::DecodeJson { .. })),
        "{error:?}"
    );
}

#[test]
fn a_sealed_state_this_server_did_not_open_is_a_typed_error() {
    let state = postcard::to_stdvec(&Counter { count: 5, limit: 9 }).unwrap();
    let mut draft = draft("counter", state).with_state_format(StateFormat::Postcard);
    StateSealer::new(&SigningKey::from_seed(&[1; 32]))
        .seal_draft(&mut draft)
        .unwrap();
    assert!(draft.sealed);
    let (result, _) = context::sync_scope(context_of(draft), Counter::load);
    let error = result.err();
    assert!(
        matches!(&error, Some(StateError::Sealed { service }) if service.as_str() == "counter"),
        "{error:?}"
    );
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

/// What `f` logs, as text.
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_changed_state_dropped_without_save_is_reported_in_debug_builds() {
    let forgot = logs_of(|| {
        context::sync_scope(with_state(&sample()), || {
            let mut cart = Cart::load().unwrap();
            *cart.visits_mut() += 1;
            // No save: the change is lost.
        });
    });
    if cfg!(debug_assertions) {
        assert!(forgot.contains("dropped without save()"), "{forgot}");
        assert!(forgot.contains("visits"), "{forgot}");
    }
    // Saved, discarded, read only, or borrowed but unchanged: nothing to report.
    let quiet = logs_of(|| {
        context::sync_scope(with_state(&sample()), || {
            let mut saved = Cart::load().unwrap();
            *saved.visits_mut() += 1;
            saved.save().unwrap();
            let mut discarded = Cart::load().unwrap();
            *discarded.visits_mut() += 1;
            discarded.discard();
            let read = Cart::load().unwrap();
            assert_eq!(read.visits, 7);
            let mut unchanged = Cart::load().unwrap();
            *unchanged.visits_mut() += 0;
        });
    });
    assert!(quiet.is_empty(), "{quiet}");
}
