//! The placement seam of the serve pipeline, with the cart's handler unchanged: a
//! placement that keeps sessions gets each minted SCONE (and its delta) before the reply,
//! gives the token the reply carries, and loads the state of a request that brings only
//! that token; what it loads is verified like a carried SCONE; a commit that fails
//! refuses the call. Plus the default placement, and one connection over an in-memory
//! stream.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use examples::cart::{self, Cart, CartRequest, CartResponse, CartState, CartView};
use scone::{ClientId, Draft, EndpointId, Minter, RejectReason, Scone, ServiceId, SigningKey};
use scone_rpc::envelope::{
    Outcome, RefusalKind, RequestEnvelope, ResponseEnvelope, WireScones, ENVELOPE_VERSION,
};
use scone_rpc::server::placement::{Commit, Committed, Placement, PlacementError};
use scone_rpc::state::Delta;
use scone_rpc::{RetryAdvice, SconeLayer};

/// What a commit was given, as the test checks it.
#[derive(Clone, Debug)]
struct Seen {
    version: u64,
    previous: Option<u64>,
    delta: Option<Delta>,
    token: Option<Vec<u8>>,
}

/// A placement that keeps each session's newest SCONE in memory, by its endpoint ID,
/// which is also the token; the reply carries the token only.
#[derive(Clone, Default)]
struct Kept {
    held: Arc<Mutex<HashMap<Vec<u8>, Scone>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Fail every commit, as a cluster that cannot reach its replicas.
    failing: Arc<AtomicBool>,
    /// Load this instead of what is held.
    planted: Arc<Mutex<Option<Scone>>>,
}

impl Placement for Kept {
    type Lease = ();

    async fn load(
        &self,
        _service: &ServiceId,
        token: &[u8],
        _deadline: std::time::Instant,
    ) -> Result<(Option<Scone>, ()), PlacementError> {
        if let Some(planted) = self.planted.lock().unwrap().clone() {
            return Ok((Some(planted), ()));
        }
        Ok((self.held.lock().unwrap().get(token).cloned(), ()))
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<Committed, PlacementError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(PlacementError::NotReplicated {
                acknowledged: 0,
                required: 1,
            });
        }
        let delta = commit
            .delta
            .map(|bytes| postcard::from_bytes::<Delta>(bytes).expect("a delta decodes"));
        self.seen.lock().unwrap().push(Seen {
            version: commit.minted.version(),
            previous: commit.previous.map(Scone::version),
            delta,
            token: commit.token.map(<[u8]>::to_vec),
        });
        let token = commit.minted.endpoint().as_bytes().to_vec();
        self.held
            .lock()
            .unwrap()
            .insert(token.clone(), commit.minted.clone());
        Ok(Committed::held(token.into_boxed_slice(), false))
    }

    fn wants_deltas(&self) -> bool {
        true
    }
}

/// A cart server whose sessions `placement` keeps.
async fn kept_cart(key: &SigningKey, placement: Kept) -> TestServer {
    let layer = SconeLayer::for_state::<CartState>(key.clone())
        .unwrap()
        .with_placement(placement);
    TestServer::start(|listener, stop| async move {
        cart::serve_with(listener, &layer, "kept", stop).await?;
        Ok(())
    })
    .await
}

/// Sends one cart request in a raw envelope, with `scones` and `token`.
async fn call(
    channel: &scone_rpc::client::SconeChannel,
    request: CartRequest,
    scones: WireScones,
    token: Option<Vec<u8>>,
) -> ResponseEnvelope {
    let envelope = RequestEnvelope {
        version: ENVELOPE_VERSION,
        client: ClientId::from_bytes([4; 16]),
        service: cart::service_id().unwrap(),
        scones,
        token: token.map(Vec::into_boxed_slice),
        body: Bytes::from(postcard::to_allocvec(&request).unwrap()),
    };
    bounded(channel.call(tarpc::context::current(), envelope))
        .await
        .expect("the call went through")
}

/// The cart view of a reply, panicking on a refusal or a cart error.
fn view_of(reply: &ResponseEnvelope) -> CartView {
    let Outcome::Reply(body) = &reply.outcome else {
        panic!("refused: {:?}", reply.outcome);
    };
    match postcard::from_bytes::<CartResponse>(body).unwrap() {
        CartResponse::Add(view)
        | CartResponse::View(view)
        | CartResponse::Remove(view)
        | CartResponse::Checkout(view) => view.expect("the cart accepted it"),
    }
}

fn add(item: &str, quantity: u32) -> CartRequest {
    CartRequest::Add {
        item: item.into(),
        quantity,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_keeps_the_state_and_the_reply_carries_only_its_token() {
    let key = SigningKey::generate().unwrap();
    let placement = Kept::default();
    let server = kept_cart(&key, placement.clone()).await;
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();

    let first = call(&channel, add("apple", 1), WireScones::new(), None).await;
    assert_eq!(view_of(&first).items.get("apple"), Some(&1));
    assert!(first.scones.is_empty(), "the placement holds the SCONE");
    let token = first.token.clone().expect("a token").into_vec();
    {
        let seen = placement.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "committed before the reply came");
        assert_eq!(seen[0].previous, None);
        assert_eq!(seen[0].token, None);
    }

    // Only the token: the state comes from the placement.
    let second = call(
        &channel,
        add("apple", 2),
        WireScones::new(),
        Some(token.clone()),
    )
    .await;
    assert_eq!(view_of(&second).items.get("apple"), Some(&3));
    let seen = placement.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].previous, Some(seen[0].version));
    assert!(seen[1].version > seen[0].version);
    assert_eq!(seen[1].token.as_deref(), Some(token.as_slice()));
    // The delta holds the changed fields (items, changes), and turns the old state into
    // the new one.
    let delta = seen[1]
        .delta
        .clone()
        .expect("a delta, since the placement wants them");
    let indices: Vec<u16> = delta.fields.iter().map(|f| f.index).collect();
    assert_eq!(indices, [0, 1]);
    let mut state = CartState::default();
    state.items.insert("apple".into(), 1);
    state.changes = 1;
    delta.apply(&mut state).unwrap();
    assert_eq!(state.items.get("apple"), Some(&3));
    assert_eq!(state.changes, 2);

    // A read changes nothing: no commit.
    let read = call(
        &channel,
        CartRequest::View {},
        WireScones::new(),
        Some(token),
    )
    .await;
    assert_eq!(view_of(&read).items.get("apple"), Some(&3));
    assert_eq!(placement.seen.lock().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_refuses_the_call_and_sends_no_state() {
    let key = SigningKey::generate().unwrap();
    let placement = Kept::default();
    placement.failing.store(true, Ordering::SeqCst);
    let server = kept_cart(&key, placement.clone()).await;
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();

    let reply = call(&channel, add("apple", 1), WireScones::new(), None).await;
    let Outcome::Refused(refusal) = &reply.outcome else {
        panic!("replied as if kept: {:?}", reply.outcome);
    };
    assert_eq!(refusal.kind, RefusalKind::NotReplicated);
    assert!(refusal.detail.contains("0 of 1"), "{}", refusal.detail);
    assert!(reply.scones.is_empty() && reply.token.is_none());
    assert!(placement.held.lock().unwrap().is_empty());

    // Through a generated client, the error says the call may have run.
    let stub = scone_rpc::SconeClient::thin(channel, cart::service_id().unwrap()).unwrap();
    let client = cart::CartClient::from(stub);
    let error = bounded(client.add(tarpc::context::current(), "pear".into(), 1))
        .await
        .unwrap_err();
    let error = scone_rpc::CallError::from(error);
    assert_eq!(error.refusal(), Some(RefusalKind::NotReplicated));
    assert_eq!(error.retry_advice(), RetryAdvice::MayHaveRun);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_placement_loads_is_verified_like_a_carried_scone() {
    let key = SigningKey::generate().unwrap();
    let placement = Kept::default();
    let server = kept_cart(&key, placement.clone()).await;
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();
    // A store that hands out a cart SCONE signed by someone else.
    let forged = Minter::new(SigningKey::generate().unwrap())
        .mint(Draft::new(
            cart::service_id().unwrap(),
            EndpointId::from_bytes([7; 16]),
        ))
        .unwrap();
    *placement.planted.lock().unwrap() = Some(forged);

    let reply = call(
        &channel,
        add("apple", 1),
        WireScones::new(),
        Some(vec![7; 16]),
    )
    .await;
    let Outcome::Refused(refusal) = &reply.outcome else {
        panic!("served a forged state: {:?}", reply.outcome);
    };
    assert_eq!(refusal.kind, RefusalKind::Scone(RejectReason::UnknownKey));
    assert!(
        placement.seen.lock().unwrap().is_empty(),
        "nothing committed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_placement_ignores_a_token_and_hands_the_scone_to_the_client() {
    let key = SigningKey::generate().unwrap();
    let server = TestServer::start(|listener, stop| {
        let key = key.clone();
        async move {
            cart::serve(listener, key, "plain", stop).await?;
            Ok(())
        }
    })
    .await;
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();
    let reply = call(
        &channel,
        add("apple", 1),
        WireScones::new(),
        Some(vec![1, 2, 3]),
    )
    .await;
    assert_eq!(view_of(&reply).items.get("apple"), Some(&1));
    assert_eq!(reply.scones.len(), 1, "the client holds its SCONE");
    assert!(reply.token.is_none());

    // Ending the session: the final cart comes back, with no new SCONE.
    let reply = call(&channel, CartRequest::Checkout {}, reply.scones, None).await;
    assert_eq!(view_of(&reply).items.get("apple"), Some(&1));
    assert!(
        reply.scones.is_empty(),
        "an ended session gets no new SCONE"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_over_an_in_memory_stream() {
    let key = SigningKey::generate().unwrap();
    let layer = SconeLayer::for_state::<CartState>(key).unwrap();
    let serve = layer.wrap(
        cart::CartServer {
            name: "piped".into(),
        }
        .serve(),
    );
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = scone_rpc::server::serve_stream(
        server_end,
        serve,
        scone_rpc::server::ServerConfig::default(),
        stopped,
    );
    let client = async move {
        let channel = scone_rpc::client::over(client_end, Default::default(), 1 << 20);
        let stub =
            scone_rpc::SconeClient::caching_for::<CartState>(channel, Default::default()).unwrap();
        let client = cart::CartClient::from(stub);
        for _ in 0..2 {
            bounded(client.add(tarpc::context::current(), "apple".into(), 1))
                .await
                .unwrap()
                .unwrap();
        }
        let view = bounded(client.view(tarpc::context::current()))
            .await
            .unwrap()
            .unwrap();
        drop(stop);
        view
    };
    let ((), view) = bounded(async { tokio::join!(server, client) }).await;
    assert_eq!(view.items.get("apple"), Some(&2));
    assert_eq!(view.served_by, "piped");
}
