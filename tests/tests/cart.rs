//! The cart service over loopback TCP: state travels with the client, servers are
//! interchangeable and can restart, and state is re-signed only when it changes.

mod common;

use common::{bounded, TestServer};
use examples::cart::{self, CartError};
use scone::SigningKey;
use scone_rpc::SconeStore;
use tarpc::context;

async fn cart_server(key: &SigningKey, name: &'static str) -> TestServer {
    let key = key.clone();
    TestServer::start(move |listener, stop| async move {
        cart::serve(listener, key, name, stop).await?;
        Ok(())
    })
    .await
}

fn items(view: &cart::CartView) -> Vec<(&str, u32)> {
    view.items.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_survives_a_restart_of_every_server() {
    let key = SigningKey::generate().unwrap();
    let store = SconeStore::default();
    let server = cart_server(&key, "first").await;
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 2))
        .await
        .unwrap()
        .unwrap();
    bounded(client.add(context::current(), "pear".into(), 1))
        .await
        .unwrap()
        .unwrap();
    server.stop().await;

    // A new server process with the same key, on another port: the client brings the cart.
    let server = cart_server(&key, "second").await;
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    let view = bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(items(&view), [("apple", 2), ("pear", 1)]);
    assert_eq!(view.served_by, "second");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_servers_see_one_consistent_cart() {
    let key = SigningKey::generate().unwrap();
    let store = SconeStore::default();
    let a = cart_server(&key, "a").await;
    let b = cart_server(&key, "b").await;
    let to_a = bounded(cart::connect(a.addr, store.clone())).await.unwrap();
    let to_b = bounded(cart::connect(b.addr, store.clone())).await.unwrap();
    for round in 1..=10u32 {
        let client = if round % 2 == 0 { &to_a } else { &to_b };
        let view = bounded(client.add(context::current(), "apple".into(), 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(items(&view), [("apple", round)]);
        assert_eq!(view.served_by, if round % 2 == 0 { "a" } else { "b" });
    }
    let version = store.get(&cart::service_id().unwrap()).unwrap().version();
    assert_eq!(version, 10, "one new version per change");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_or_a_refused_change_mints_nothing() {
    let key = SigningKey::generate().unwrap();
    let store = SconeStore::default();
    let server = cart_server(&key, "only").await;
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();
    let before = store.get(&cart::service_id().unwrap()).unwrap();

    bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    let refused = bounded(client.remove(context::current(), "kiwi".into()))
        .await
        .unwrap();
    assert_eq!(refused, Err(CartError::NotInCart("kiwi".into())));
    let bad = bounded(client.add(context::current(), "apple".into(), 0))
        .await
        .unwrap();
    assert_eq!(bad, Err(CartError::BadQuantity(0)));

    let after = store.get(&cart::service_id().unwrap()).unwrap();
    assert_eq!(after, before, "the very same SCONE: not re-signed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_client_keeps_nothing_so_each_call_is_a_new_session() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();
    let thin = cart::CartClient::from(
        scone_rpc::SconeClient::thin(channel, cart::service_id().unwrap()).unwrap(),
    );
    for _ in 0..3 {
        let view = bounded(thin.add(context::current(), "apple".into(), 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(items(&view), [("apple", 1)], "no relay holds its state");
    }
    server.stop().await;
}
