//! The client-held placement under attack, over loopback TCP: replay and rollback, stores
//! poisoned by forged or orphaned SCONEs, expiry and renewal.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bounded, TestServer};
use examples::cart::{self, Cart, CartServer};
use examples::tiers;
use scone::{Draft, EndpointId, KeyRing, ManualClock, Minter, RejectReason, ServiceId, SigningKey};
use scone_rpc::envelope::{Outcome, RequestEnvelope, ResponseEnvelope, WireScones};
use scone_rpc::server::{LayerConfig, MemoryWatermarks, ServerConfig};
use scone_rpc::{refusal, RefusalKind, SconeLayer, SconeStore};
use tarpc::context;

fn service(name: &str) -> ServiceId {
    ServiceId::new(name).unwrap()
}

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

/// A server that answers every request with `reply(request)`, knowing nothing of SCONEs:
/// what a malicious server or a man in the middle can send.
async fn raw_server<F>(reply: F) -> TestServer
where
    F: Fn(RequestEnvelope) -> ResponseEnvelope + Clone + Send + Sync + 'static,
{
    TestServer::start(move |listener, stop| async move {
        let serve = tarpc::server::serve(move |_, request: RequestEnvelope| {
            let reply = reply.clone();
            async move { Ok(reply(request)) }
        });
        scone_rpc::server::run(listener, serve, ServerConfig::default(), stop).await?;
        Ok(())
    })
    .await
}

fn refused_reply(scones: WireScones) -> ResponseEnvelope {
    ResponseEnvelope {
        version: scone_rpc::envelope::ENVELOPE_VERSION,
        scones,
        token: None,
        outcome: Outcome::Refused(Box::new(scone_rpc::Refusal {
            kind: RefusalKind::BadRequest,
            service: None,
            detail: "go away".into(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_ledger_scone_is_refused_so_a_balance_cannot_be_spent_twice() {
    let (ledger_key, wallet_key) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let ledger = TestServer::start(move |listener, stop| async move {
        tiers::serve_ledger(listener, ledger_key, stop).await?;
        Ok(())
    })
    .await;
    let ledger_addr = ledger.addr;
    let wallet = TestServer::start(move |listener, stop| async move {
        tiers::serve_wallet(listener, wallet_key, ledger_addr, stop).await
    })
    .await;
    let (wallet_id, ledger_id) = (service("wallet"), service("ledger"));

    let store = SconeStore::default();
    let client = bounded(tiers::connect_wallet(wallet.addr, store.clone()))
        .await
        .unwrap();
    let funded = bounded(client.deposit(context::current(), 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(funded.balance, 100);
    // The holder keeps a copy of its SCONEs while the balance is 100, then spends it all.
    let (saved_wallet, saved_ledger) = (
        store.get(&wallet_id).unwrap(),
        store.get_via(&wallet_id, &ledger_id).unwrap(),
    );
    let spent = bounded(client.deposit(context::current(), -100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spent.balance, 0);

    // And hands the copy back, to spend the same 100 again.
    let replaying = SconeStore::default();
    replaying.put(saved_wallet);
    replaying.put_via(&wallet_id, saved_ledger).unwrap();
    let replayer = bounded(tiers::connect_wallet(wallet.addr, replaying))
        .await
        .unwrap();
    let replayed = bounded(replayer.deposit(context::current(), -100))
        .await
        .unwrap();
    let error = replayed.expect_err("the ledger refuses the old SCONE");
    assert!(error.to_lowercase().contains("stale"), "{error}");

    // The genuine session goes on from where it was.
    let after = bounded(client.deposit(context::current(), 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.balance, after.entries), (5, 3));
    wallet.stop().await;
    ledger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_from_one_version_cannot_fork_the_history() {
    let guard = LayerConfig {
        replay_guard: Some(Arc::new(MemoryWatermarks::default())),
        ..LayerConfig::default()
    };
    let server = cart_server(SigningKey::generate().unwrap(), guard).await;
    let store = SconeStore::default();
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();
    let v1 = store.get(&cart::service_id().unwrap()).unwrap();

    // Two holders of version 1 each write: only the first may become version 2.
    let mut outcomes = Vec::new();
    for item in ["pear", "plum"] {
        let fork = SconeStore::default();
        fork.put(v1.clone());
        let forker = bounded(cart::connect(server.addr, fork)).await.unwrap();
        outcomes.push(bounded(forker.add(context::current(), item.into(), 1)).await);
    }
    assert!(
        outcomes[0].as_ref().is_ok_and(Result::is_ok),
        "{:?}",
        outcomes[0]
    );
    let second = outcomes[1]
        .as_ref()
        .expect_err("the rival branch is refused");
    assert_eq!(
        refusal(second),
        Some(RefusalKind::Scone(RejectReason::Stale))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_by_itself_when_the_server_changes_its_key() {
    let store = SconeStore::default();
    let server = cart_server(SigningKey::generate().unwrap(), LayerConfig::default()).await;
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();
    server.stop().await;

    // Restarted with a new key: the SCONE the client holds is signed by one it forgot.
    let server = cart_server(SigningKey::generate().unwrap(), LayerConfig::default()).await;
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    let first = bounded(client.add(context::current(), "pear".into(), 1)).await;
    let error = first.expect_err("the old SCONE is refused, and says why");
    assert_eq!(
        refusal(&error),
        Some(RefusalKind::Scone(RejectReason::UnknownKey))
    );
    // The refused SCONE was dropped: the next call starts a new session instead of
    // being refused for as long as the old SCONE lives.
    let second = bounded(client.add(context::current(), "pear".into(), 1)).await;
    let view = second.unwrap().unwrap();
    assert_eq!(view.items.keys().collect::<Vec<_>>(), ["pear"]);
    server.stop().await;
}

/// A server that answers with a SCONE of the caller's own cart session, forged at version
/// `u64::MAX` under `key`: every genuine SCONE of the session would look stale after it.
async fn poisoning_server(key: SigningKey) -> TestServer {
    let minter = Minter::new(key);
    raw_server(move |request| {
        let endpoint = WireScones::decode(
            request.scones,
            Default::default(),
            scone::DEFAULT_MAX_SCONE_BYTES,
        )
        .ok()
        .and_then(|mut scones| scones.next())
        .map_or(EndpointId::from_bytes([7; 16]), |scone| scone.endpoint());
        let forged = minter
            .mint(Draft::new(request.service, endpoint).with_version(u64::MAX))
            .unwrap();
        refused_reply(WireScones::from(vec![forged.into_encoded()]))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_version_max_scone_does_not_lock_the_client_out() {
    let key = SigningKey::generate().unwrap();
    let cart_id = cart::service_id().unwrap();
    let genuine = cart_server(key.clone(), LayerConfig::default()).await;
    let evil = poisoning_server(SigningKey::generate().unwrap()).await;

    // Without the service's key, the store takes the forged SCONE, is refused once, and
    // drops it: the client is back in service on the next call.
    let store = SconeStore::default();
    let client = bounded(cart::connect(genuine.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();
    let misled = bounded(cart::connect(evil.addr, store.clone()))
        .await
        .unwrap();
    assert!(bounded(misled.view(context::current())).await.is_err());
    assert_eq!(store.get(&cart_id).unwrap().version(), u64::MAX, "poisoned");
    let refused = bounded(client.view(context::current())).await.unwrap_err();
    assert_eq!(
        refusal(&refused),
        Some(RefusalKind::Scone(RejectReason::UnknownKey))
    );
    let recovered = bounded(client.add(context::current(), "pear".into(), 1)).await;
    assert!(recovered.unwrap().is_ok());

    // With the service's key, the forged SCONE is never stored and the session goes on.
    let verifier =
        scone::Verifier::new(KeyRing::for_service(cart_id.clone(), [key.public_key()]).unwrap());
    let store = SconeStore::default().verifying(verifier);
    let client = bounded(cart::connect(genuine.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();
    let misled = bounded(cart::connect(evil.addr, store.clone()))
        .await
        .unwrap();
    let error = bounded(misled.view(context::current())).await.unwrap_err();
    assert!(format!("{error:?}").contains("Untrusted"), "{error:?}");
    assert_eq!(store.get(&cart_id).unwrap().version(), 1);
    let view = bounded(client.add(context::current(), "pear".into(), 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.items.len(), 2, "the session kept its state");
    genuine.stop().await;
    evil.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_cannot_grow_the_companions_past_what_a_request_carries() {
    // A wallet that sends 15 new back-ends' SCONEs with every reply.
    let minter = Minter::new(SigningKey::generate().unwrap());
    let calls = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let flooding = raw_server(move |_| {
        let call = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scones = (0..15)
            .map(|i| {
                let backend = service(&format!("backend-{call}-{i}"));
                minter
                    .mint(Draft::new(backend, EndpointId::from_bytes([i; 16])))
                    .unwrap()
                    .into_encoded()
            })
            .collect();
        refused_reply(scones)
    })
    .await;
    let store = SconeStore::default();
    let client = bounded(tiers::connect_wallet(flooding.addr, store.clone()))
        .await
        .unwrap();
    for _ in 0..3 {
        // Each call still reaches the server (it answers with a refusal of its own):
        // never a local "could not attach" error.
        let error = bounded(client.deposit(context::current(), 1))
            .await
            .unwrap_err();
        assert_eq!(refusal(&error), Some(RefusalKind::BadRequest), "{error:?}");
    }
    assert_eq!(
        store.companions_of(&service("wallet")).len(),
        scone_rpc::client::MAX_COMPANIONS
    );
    flooding.stop().await;
}

/// A cart server whose SCONEs live 60 s, with no clock skew allowed, on a manual clock.
async fn clocked_cart_server() -> (Arc<ManualClock>, TestServer) {
    let clock = ManualClock::new(1_800_000_000_000);
    let config = LayerConfig {
        ttl: Duration::from_secs(60),
        clock_skew: Duration::ZERO,
        clock: clock.clone(),
        ..LayerConfig::default()
    };
    (
        clock,
        cart_server(SigningKey::generate().unwrap(), config).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_scone_earns_the_expired_refusal_not_an_empty_session() {
    let (clock, server) = clocked_cart_server().await;
    let store = SconeStore::default().with_clock(clock.clone());
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();

    clock.advance(Duration::from_secs(61));
    let error = bounded(client.view(context::current())).await.unwrap_err();
    assert_eq!(
        refusal(&error),
        Some(RefusalKind::Scone(RejectReason::Expired))
    );
    // Told once; then the client starts over.
    let fresh = bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    assert!(fresh.items.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_reads_keeps_its_session_by_renewal() {
    let (clock, server) = clocked_cart_server().await;
    let cart_id = cart::service_id().unwrap();
    let store = SconeStore::default().with_clock(clock.clone());
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "apple".into(), 1))
        .await
        .unwrap()
        .unwrap();
    let first = store.get(&cart_id).unwrap();

    // Early in its life a read re-signs nothing.
    clock.advance(Duration::from_secs(20));
    bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get(&cart_id).unwrap(), first);

    // Past half its life a read renews it: next version, same state, later expiry.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(20));
        let view = bounded(client.view(context::current()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.items.keys().collect::<Vec<_>>(), ["apple"]);
    }
    let renewed = store.get(&cart_id).unwrap();
    assert!(renewed.version() > first.version());
    assert_eq!(renewed.endpoint(), first.endpoint());
    assert!(renewed.expires_at_ms() > first.expires_at_ms() + 60_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_state_is_hidden_from_its_holder_and_still_publicly_verifiable() {
    let clock = ManualClock::new(1_800_000_000_000);
    let sealed = LayerConfig {
        sealed_state: true,
        ttl: Duration::from_secs(60),
        clock: clock.clone(),
        ..LayerConfig::default()
    };
    let key = SigningKey::generate().unwrap();
    let server = cart_server(key.clone(), sealed).await;
    let cart_id = cart::service_id().unwrap();
    let store = SconeStore::default().with_clock(clock.clone());
    let client = bounded(cart::connect(server.addr, store.clone()))
        .await
        .unwrap();
    bounded(client.add(context::current(), "a-secret-item".into(), 1))
        .await
        .unwrap()
        .unwrap();

    let held = store.get(&cart_id).unwrap();
    let needle = b"a-secret-item";
    assert!(
        !held.state().windows(needle.len()).any(|w| w == needle),
        "the holder cannot read it"
    );
    let public =
        scone::Verifier::new(KeyRing::for_service(cart_id.clone(), [key.public_key()]).unwrap())
            .with_clock(clock.clone());
    public
        .verify(&held)
        .expect("anyone with the public key still verifies it");

    // The server opens it (and so does a renewal, which is bound to the next version).
    let view = bounded(client.add(context::current(), "pear".into(), 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.items.len(), 2);
    clock.advance(Duration::from_secs(40));
    let read = bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.items.len(), 2);
    let renewed = store.get(&cart_id).unwrap();
    assert_eq!(renewed.version(), 3, "renewed on that read");
    clock.advance(Duration::from_secs(40));
    let read = bounded(client.view(context::current()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.items.len(), 2, "the renewed SCONE opens too");

    // A state the server did not seal is refused with a typed error, not read as garbage.
    let unsealed = Minter::new(key.clone())
        .with_clock(clock.clone())
        .mint(Draft::new(cart_id.clone(), EndpointId::from_bytes([3; 16])).with_state(vec![0]))
        .unwrap();
    let forger_store = SconeStore::default();
    forger_store.put(unsealed);
    let other = bounded(cart::connect(server.addr, forger_store))
        .await
        .unwrap();
    let error = bounded(other.view(context::current())).await.unwrap_err();
    assert_eq!(
        refusal(&error),
        Some(RefusalKind::Scone(RejectReason::Malformed))
    );
    server.stop().await;
}
