//! The state's format and sealed flag, over loopback TCP: a state minted by `scone mint`
//! as JSON is read by the derived cart, a state in a format it does not read or sealed
//! when the server does not seal is a typed error (never garbage), and a sealing server
//! refuses an unsealed state without trying to open it.

mod common;

use std::collections::BTreeMap;

use common::{bounded, TestServer};
use examples::cart::{self, Cart, CartError, CartServer, CartState};
use scone::sealed::StateSealer;
use scone::{Draft, EndpointId, KeyRing, Minter, RejectReason, Scone, SigningKey, StateFormat};
use scone_rpc::server::{LayerConfig, ServerConfig};
use scone_rpc::{refusal, RefusalKind, SconeLayer, SconeStore};
use tarpc::client::RpcError;
use tarpc::context;

/// A cart server with `config`.
async fn cart_server(key: SigningKey, config: LayerConfig) -> TestServer {
    TestServer::start(move |listener, stop| async move {
        let layer = SconeLayer::with_config(cart::service_id()?, key, KeyRing::new(), config)?;
        let serve = layer.wrap(CartServer { name: "c".into() }.serve());
        scone_rpc::server::run(listener, serve, ServerConfig::default(), stop).await?;
        Ok(())
    })
    .await
}

/// A cart draft of session `session` holding `state`, tagged `format`.
fn cart_draft(session: u8, state: &[u8], format: StateFormat) -> Draft {
    Draft::new(
        cart::service_id().unwrap(),
        EndpointId::from_bytes([session; 16]),
    )
    .with_state(state.to_vec())
    .with_state_format(format)
}

/// A store holding `scone`, as a client that was handed it would.
fn store_with(scone: Scone) -> SconeStore {
    let store = SconeStore::default();
    store.put(scone);
    store
}

/// The detail the server sent with a refusal, or the call's error text.
fn detail(error: &RpcError) -> String {
    match error {
        RpcError::Server(server_error) => server_error.detail.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_minted_as_json_by_the_cli_is_read_by_the_derived_state_and_saved_as_postcard() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(key.clone(), LayerConfig::default()).await;
    // What `scone mint --key cart.key --service cart --data '{...}'` mints.
    let json = br#"{"items":{"apple":2},"changes":1}"#;
    let minted = Minter::new(key)
        .mint(cart_draft(1, json, StateFormat::Json))
        .unwrap();
    let store = store_with(minted);
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();

    let view = bounded(client.add(context::current(), "pear".into(), 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        view.items,
        BTreeMap::from([("apple".to_owned(), 2), ("pear".to_owned(), 1)])
    );
    // The next version is the derived type's own encoding, tagged so.
    let held = store.get(&cart::service_id().unwrap()).unwrap();
    assert_eq!(held.version(), 2);
    assert_eq!(held.state_format(), StateFormat::Postcard);
    assert!(!held.is_sealed());
    let state: CartState = postcard::from_bytes(held.state()).unwrap();
    assert_eq!(state.changes, 2);
    assert_eq!(state.items, view.items);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_in_a_format_the_cart_does_not_read_is_a_typed_error_not_garbage() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(key.clone(), LayerConfig::default()).await;
    // A good cart encoding, but minted opaque (as `context::write_state` writes): the
    // cart may not guess.
    let postcard = postcard::to_stdvec(&CartState {
        items: BTreeMap::from([("apple".to_owned(), 2)]),
        changes: 1,
    })
    .unwrap();
    let opaque = Minter::new(key)
        .mint(cart_draft(1, &postcard, StateFormat::Opaque))
        .unwrap();
    let client = bounded(cart::connect(server.addr, store_with(opaque)))
        .await
        .unwrap();
    let reply = bounded(client.view(context::current())).await.unwrap();
    match reply {
        Err(CartError::State(text)) => {
            assert!(text.contains("is opaque, not postcard"), "{text}");
        }
        other => panic!("expected the cart's typed state error, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_state_round_trips_its_flag_and_a_server_that_does_not_seal_refuses_it() {
    let key = SigningKey::generate().unwrap();
    let sealing = LayerConfig {
        sealed_state: true,
        ..LayerConfig::default()
    };
    let sealed_server = cart_server(key.clone(), sealing).await;
    let store = SconeStore::default();
    let client = bounded(cart::connect(sealed_server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 2))
        .await
        .unwrap()
        .unwrap();
    let held = store.get(&cart::service_id().unwrap()).unwrap();
    // Its claims say sealed, and name the plaintext's format.
    assert!(held.is_sealed());
    assert_eq!(held.state_format(), StateFormat::Postcard);
    let back = Scone::decode(held.encoded().clone()).unwrap();
    assert!(back.is_sealed());
    assert_eq!(
        StateSealer::new(&key).open_scone(&back).unwrap(),
        postcard::to_stdvec(&CartState {
            items: BTreeMap::from([("apple".to_owned(), 2)]),
            changes: 1,
        })
        .unwrap()
    );
    // The sealing server reads it back.
    let view = bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.items.get("apple"), Some(&2));
    sealed_server.stop().await;

    // A server of the same key that does not seal refuses it, rather than decode
    // ciphertext as a cart.
    let plain_server = cart_server(key, LayerConfig::default()).await;
    let client = bounded(cart::connect(plain_server.addr, store_with(held)))
        .await
        .unwrap();
    let outcome = bounded(client.view(context::current())).await;
    let text = match outcome {
        Ok(Err(CartError::State(text))) => text,
        Err(error) => detail(&error),
        other => panic!("expected a refusal of the sealed state, got {other:?}"),
    };
    assert!(text.contains("sealed"), "{text}");
    plain_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealing_server_refuses_an_unsealed_state_without_trying_to_open_it() {
    let key = SigningKey::generate().unwrap();
    let sealing = LayerConfig {
        sealed_state: true,
        ..LayerConfig::default()
    };
    let server = cart_server(key.clone(), sealing).await;
    // Long enough to pass for nonce, ciphertext and tag: only the flag says it is not.
    let unsealed = Minter::new(key)
        .mint(cart_draft(1, &[0; 64], StateFormat::Postcard))
        .unwrap();
    let client = bounded(cart::connect(server.addr, store_with(unsealed)))
        .await
        .unwrap();
    let error = bounded(client.view(context::current()))
        .await
        .expect_err("the unsealed state is refused");
    assert_eq!(
        refusal(&error),
        Some(RefusalKind::Scone(RejectReason::Malformed))
    );
    assert!(detail(&error).contains("not sealed"), "{}", detail(&error));
    server.stop().await;
}
