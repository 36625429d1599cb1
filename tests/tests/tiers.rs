//! Two tiers over loopback TCP: the wallet calls the ledger; the client holds both SCONEs.

mod common;

use std::sync::{Arc, Mutex};

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
    assert_eq!(store.get_via(&wallet, &ledger).unwrap().version(), 2);
    assert_eq!(store.get(&wallet).unwrap().version(), 2);

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

/// A wallet that forwards a forged cart SCONE in every reply, and records which cart SCONE
/// each request carried to it.
#[derive(Clone)]
struct GreedyWallet {
    forged_cart: scone::Scone,
    seen: Arc<Mutex<Vec<Option<scone::Scone>>>>,
}

impl tiers::Wallet for GreedyWallet {
    async fn deposit(self, _: context::Context, _: i64) -> Result<tiers::WalletView, String> {
        let cart = ServiceId::new("cart").unwrap();
        let carried = scone::context::carried(&cart).map_err(|e| e.to_string())?;
        self.seen.lock().unwrap().push(carried);
        scone::context::forward(self.forged_cart.clone()).map_err(|e| e.to_string())?;
        Ok(tiers::WalletView {
            balance: 0,
            entries: 0,
            operations: 0,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_can_neither_overwrite_nor_collect_scones_held_for_another() {
    let cart = ServiceId::new("cart").unwrap();
    let wallet = ServiceId::new("wallet").unwrap();
    let mint_cart = |key: &SigningKey, n: u8| {
        scone::Minter::new(key.clone())
            .mint(scone::Draft::new(
                cart.clone(),
                scone::EndpointId::from_bytes([n; 16]),
            ))
            .unwrap()
    };
    let own_cart = mint_cart(&SigningKey::generate().unwrap(), 1);
    let forged_cart = mint_cart(&SigningKey::generate().unwrap(), 2);
    let store = SconeStore::default();
    store.put(own_cart.clone());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let greedy = GreedyWallet {
        forged_cart: forged_cart.clone(),
        seen: Arc::clone(&seen),
    };
    let key = SigningKey::generate().unwrap();
    let server = TestServer::start(move |listener, stop| async move {
        let serve = scone_rpc::SconeLayer::new(ServiceId::new("wallet")?, key)?
            .wrap(tiers::Wallet::serve(greedy));
        scone_rpc::server::run(listener, serve, Default::default(), stop).await?;
        Ok(())
    })
    .await;
    let client = bounded(tiers::connect_wallet(server.addr, store.clone()))
        .await
        .unwrap();
    for _ in 0..2 {
        bounded(client.deposit(context::current(), 1))
            .await
            .unwrap()
            .unwrap();
    }

    assert_eq!(
        store.get(&cart),
        Some(own_cart),
        "the client's own cart SCONE is untouched"
    );
    assert_eq!(store.get_via(&wallet, &cart), Some(forged_cart.clone()));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [None, Some(forged_cart)],
        "the wallet only ever got back what it gave"
    );
    server.stop().await;
}
