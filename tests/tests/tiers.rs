//! Two tiers over loopback TCP: the wallet calls the ledger; the client holds both SCONEs.

mod common;

use common::{bounded, TestServer};
use examples::tiers;
use scone::{ServiceId, SigningKey};
use scone_rpc::SconeStore;
use tarpc::context;

struct Tiers {
    ledger: TestServer,
    wallet: TestServer,
}

async fn start(ledger_key: &SigningKey, wallet_key: &SigningKey) -> Tiers {
    let key = ledger_key.clone();
    let ledger = TestServer::start(move |listener, stop| async move {
        tiers::serve_ledger(listener, key, stop).await?;
        Ok(())
    })
    .await;
    let key = wallet_key.clone();
    let ledger_addr = ledger.addr;
    let wallet = TestServer::start(move |listener, stop| async move {
        tiers::serve_wallet(listener, key, ledger_addr, stop).await
    })
    .await;
    Tiers { ledger, wallet }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_back_ends_state_is_entrusted_to_the_client_through_the_front_end() {
    let ledger_key = SigningKey::generate().unwrap();
    let wallet_key = SigningKey::generate().unwrap();
    let store = SconeStore::default();
    let cache = store.cache().clone();

    let running = start(&ledger_key, &wallet_key).await;
    let client = bounded(tiers::connect_wallet(running.wallet.addr, store.clone()))
        .await
        .unwrap();
    let first = bounded(client.deposit(context::current(), 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.balance, first.entries, first.operations),
        (100, 1, 1)
    );
    let second = bounded(client.deposit(context::current(), -30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.balance, second.entries, second.operations),
        (70, 2, 2)
    );

    // The client holds a SCONE for each tier, though it only ever called the wallet.
    let ledger = ServiceId::new("ledger").unwrap();
    let wallet = ServiceId::new("wallet").unwrap();
    assert_eq!(cache.get(&ledger).unwrap().version(), 2);
    assert_eq!(cache.get(&wallet).unwrap().version(), 2);

    // Restart both tiers: neither kept anything, and both states continue.
    running.wallet.stop().await;
    running.ledger.stop().await;
    let running = start(&ledger_key, &wallet_key).await;
    let client = bounded(tiers::connect_wallet(running.wallet.addr, store.clone()))
        .await
        .unwrap();
    let third = bounded(client.deposit(context::current(), 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.balance, third.entries, third.operations), (75, 3, 3));
    running.wallet.stop().await;
    running.ledger.stop().await;
}
