//! The [`Store`] seam, with a store of our own whose puts wait for the test: the relay
//! answers before storing, and a client's next request waits for that store.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use scone::{PutOutcome, Scone, SigningKey};
use scone_router::{HoldKey, MemoryStore, Relay, Store};
use tokio::sync::Semaphore;

/// A memory store whose every put waits for a permit from the test.
#[derive(Clone)]
struct GatedStore {
    inner: MemoryStore,
    gate: Arc<Semaphore>,
    puts_started: Arc<AtomicUsize>,
}

impl Store for GatedStore {
    async fn get(&self, key: &HoldKey) -> Option<Scone> {
        self.inner.get(key).await
    }

    async fn put(&self, key: HoldKey, scone: Scone) -> PutOutcome {
        self.puts_started.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.expect("gate open").forget();
        self.inner.put(key, scone).await
    }

    async fn forget(&self, key: &HoldKey, refused: &Scone) -> bool {
        self.inner.forget(key, refused).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_request_waits_for_the_last_reply_to_be_stored() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let mut config = relay_config(&[server.addr], &key);
    config.pending_wait = LIMIT;
    let store = GatedStore {
        inner: MemoryStore::new(config.cache),
        gate: Arc::new(Semaphore::new(0)),
        puts_started: Arc::default(),
    };
    let relay = Relay::with_store(&config, store.clone()).unwrap();
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(relay.clone().run(listener, stop_rx));
    let client = thin_cart(addr, client_id(1)).await;

    // The reply comes back while its SCONE is still on its way into the store.
    assert_eq!(items(&add(&client, "apple", 1).await), [("apple", 1)]);
    let viewing = tokio::spawn({
        let client = client.clone();
        async move { view(&client).await }
    });
    let started = Arc::clone(&store.puts_started);
    wait_until("the store is entered", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(store.inner.cache().is_empty());

    // Had the view gone on now, it would have found nothing held and shown an empty
    // cart. It waits, and sees the apple once the store completes.
    store.gate.add_permits(1);
    let view = bounded(viewing).await.unwrap();
    assert_eq!(items(&view), [("apple", 1)]);
    assert_eq!(relay.stats().hits, 1);

    stop_tx.send(()).unwrap();
    bounded(relay_task).await.unwrap().unwrap();
    server.stop().await;
}
