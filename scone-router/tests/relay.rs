//! A thin cart client through one relay, over loopback TCP: its state lives in the relay,
//! survives server restarts and alternating servers, stays its own, never rolls back, and
//! is never forged.

mod common;

use common::*;
use examples::cart;
use scone::SigningKey;
use scone_router::Store;
use scone_rpc::{RefusalKind, SconeClient, SconeStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_client_keeps_its_cart_across_calls() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let (relay_task, relay) = start_relay(&relay_config(&[server.addr], &key)).await;
    let client = thin_cart(relay_task.addr, client_id(1)).await;

    add(&client, "apple", 2).await;
    add(&client, "pear", 1).await;
    let view = view(&client).await;
    assert_eq!(items(&view), [("apple", 2), ("pear", 1)]);

    let stats = relay.stats();
    assert_eq!(stats.misses, 1, "only the first call found nothing held");
    assert_eq!(stats.hits, 2);
    assert_eq!(stats.stores, 2, "one verified store per change");
    assert_eq!(stats.forged_dropped, 0);
    let held = relay
        .store()
        .get(&(client_id(1), cart::service_id().unwrap()))
        .await
        .expect("the relay holds the cart");
    assert_eq!(held.version(), 2);
    relay_task.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_survives_a_restart_of_the_server() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "first").await;
    let addr = server.addr;
    let (relay_task, _relay) = start_relay(&relay_config(&[addr], &key)).await;
    let client = thin_cart(relay_task.addr, client_id(1)).await;
    add(&client, "apple", 2).await;
    server.stop().await;

    // A new server with the same key, on the same address: the relay reconnects.
    let listener = bounded(tokio::net::TcpListener::bind(addr)).await.unwrap();
    let server = cart_on(listener, &key, "second");
    let view = view(&client).await;
    assert_eq!(items(&view), [("apple", 2)]);
    assert_eq!(view.served_by, "second");
    relay_task.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_servers_behind_one_route_see_one_cart() {
    let key = SigningKey::generate().unwrap();
    let a = cart_server(&key, "a").await;
    let b = cart_server(&key, "b").await;
    let (relay_task, _relay) = start_relay(&relay_config(&[a.addr, b.addr], &key)).await;
    let client = thin_cart(relay_task.addr, client_id(1)).await;
    let mut served_by = Vec::new();
    for round in 1..=6u32 {
        let view = add(&client, "apple", 1).await;
        assert_eq!(items(&view), [("apple", round)]);
        served_by.push(view.served_by);
    }
    assert_eq!(served_by, ["a", "b", "a", "b", "a", "b"], "round-robin");
    relay_task.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_never_sees_another_clients_cart() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let (relay_task, relay) = start_relay(&relay_config(&[server.addr], &key)).await;
    let alice = thin_cart(relay_task.addr, client_id(0xa)).await;
    let bob = thin_cart(relay_task.addr, client_id(0xb)).await;

    add(&alice, "apple", 1).await;
    assert_eq!(items(&view(&bob).await), []);
    assert_eq!(items(&add(&bob, "pear", 3).await), [("pear", 3)]);
    assert_eq!(items(&view(&alice).await), [("apple", 1)]);
    assert_eq!(items(&view(&bob).await), [("pear", 3)]);

    // Each holds its own session.
    let cart = cart::service_id().unwrap();
    let held_a = relay
        .store()
        .get(&(client_id(0xa), cart.clone()))
        .await
        .unwrap();
    let held_b = relay.store().get(&(client_id(0xb), cart)).await.unwrap();
    assert_ne!(held_a.endpoint(), held_b.endpoint());
    relay_task.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_scone_does_not_roll_the_cart_back() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let (relay_task, relay) = start_relay(&relay_config(&[server.addr], &key)).await;
    // A caching client behind the relay: it holds copies of its SCONEs, so it can replay.
    let store = SconeStore::default();
    let channel = bounded(scone_rpc::client::connect(relay_task.addr))
        .await
        .unwrap();
    let client = cart::CartClient::from(
        SconeClient::caching(channel, cart::service_id().unwrap(), store.clone())
            .unwrap()
            .with_client_id(client_id(1)),
    );
    let add = |item: &'static str| {
        let client = client.clone();
        async move {
            bounded(client.add(tarpc::context::current(), item.into(), 1))
                .await
                .unwrap()
                .unwrap()
        }
    };
    add("apple").await;
    let old = store.get(&cart::service_id().unwrap()).unwrap();
    add("pear").await;

    // Send the older SCONE again: the relay attaches the newest in its place.
    store.clear();
    store.put(old.clone());
    let view = add("kiwi").await;
    assert_eq!(items(&view), [("apple", 1), ("kiwi", 1), ("pear", 1)]);
    assert_eq!(relay.stats().stale_replays, 1);
    let now = store.get(&cart::service_id().unwrap()).unwrap();
    assert_eq!((now.endpoint(), now.version()), (old.endpoint(), 3));
    relay_task.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scone_from_an_untrusted_upstream_is_never_stored() {
    let trusted = SigningKey::generate().unwrap();
    let impostor = SigningKey::generate().unwrap();
    let server = cart_server(&impostor, "impostor").await;
    let (relay_task, relay) = start_relay(&relay_config(&[server.addr], &trusted)).await;
    let client = thin_cart(relay_task.addr, client_id(1)).await;

    // The reply itself goes through (the relay does not hold it back to verify)...
    assert_eq!(items(&add(&client, "apple", 1).await), [("apple", 1)]);
    // ...but its SCONE is dropped once the background check fails.
    wait_until("the forged scone is dropped", || {
        relay.stats().forged_dropped == 1
    })
    .await;
    assert_eq!(relay.stats().stores, 0);
    let key = (client_id(1), cart::service_id().unwrap());
    assert!(relay.store().get(&key).await.is_none());
    assert_eq!(relay.store().cache().len(), 0);
    // So the next call starts over.
    assert_eq!(items(&view(&client).await), []);
    relay_task.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_scone_the_server_refuses_is_dropped_not_a_lockout() {
    // The cart's key is rotated with no overlap: the new server does not accept the old
    // key's SCONEs. The relay trusts both keys.
    let old_key = SigningKey::generate().unwrap();
    let new_key = SigningKey::generate().unwrap();
    let server = cart_server(&old_key, "old").await;
    let addr = server.addr;
    let mut config = relay_config(&[addr], &old_key);
    config.trust.push(scone_router::TrustEntry {
        service: cart::service_id().unwrap(),
        key: new_key.public_key(),
    });
    let (relay_task, relay) = start_relay(&config).await;
    let client = thin_cart(relay_task.addr, client_id(1)).await;
    add(&client, "apple", 1).await;
    server.stop().await;
    let listener = bounded(tokio::net::TcpListener::bind(addr)).await.unwrap();
    let server = cart_on(listener, &new_key, "new");

    // One call is refused (the relay attached the old key's SCONE)...
    let refused = bounded(client.view(tarpc::context::current()))
        .await
        .unwrap_err();
    assert!(
        matches!(scone_rpc::refusal(&refused), Some(RefusalKind::Scone(_))),
        "{refused:?}"
    );
    assert_eq!(relay.stats().refused_dropped, 1);
    // ...then the session starts over under the new key and is held again.
    assert_eq!(items(&view(&client).await), []);
    assert_eq!(items(&add(&client, "pear", 1).await), [("pear", 1)]);
    assert_eq!(items(&view(&client).await), [("pear", 1)]);
    relay_task.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_route_is_refused() {
    let (relay_task, relay) = start_relay(&scone_router::RelayConfig::default()).await;
    let channel = bounded(scone_rpc::client::connect(relay_task.addr))
        .await
        .unwrap();
    let nowhere = scone::ServiceId::new("nowhere").unwrap();
    let client = cart::CartClient::from(SconeClient::thin(channel, nowhere).unwrap());
    let error = bounded(client.view(tarpc::context::current()))
        .await
        .unwrap_err();
    assert_eq!(scone_rpc::refusal(&error), Some(RefusalKind::WrongService));
    assert!(format!("{}", scone_rpc::CallError::from(error)).contains("no route"));
    assert_eq!(relay.stats().unrouted, 1);
    relay_task.stop().await;
}
