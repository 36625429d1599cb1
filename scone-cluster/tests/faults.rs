//! Fault scenarios on the in-memory twin of the peer network, deterministic: a reply
//! that waits for its acknowledgement, a cut link replaced by another peer, a lost
//! message that times out. Clients still call over TCP.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use examples::cart::{self, CartState};
use scone::{KeyRing, SigningKey};
use scone_cluster::transport::memory::MemoryNetwork;
use scone_cluster::{
    ClusterConfig, ClusterPlacement, Lineage, Member, Replica, SessionStore, StaticMembership,
    VersionId,
};
use scone_rpc::envelope::RefusalKind;
use scone_rpc::SconeLayer;
use tokio::sync::oneshot;

/// A node's replica, for `key`'s cart.
fn replica(key: &SigningKey) -> Replica {
    let keys = KeyRing::for_service(cart::service_id().unwrap(), [key.public_key()]).unwrap();
    Replica::new(SessionStore::new(1_000), keys)
}

fn member(port: u16) -> Member {
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Member {
        rpc: addr(port),
        peer: addr(port + 1000),
        zone: None,
    }
}

/// A replica on `network` at `port`: its member and replica.
fn replica_on(network: &MemoryNetwork, key: &SigningKey, port: u16) -> (Member, Replica) {
    let (member, replica) = (member(port), replica(key));
    network.join(member.peer, replica.clone());
    (member, replica)
}

/// Replicas on `network`, one per (port, zone).
fn zoned_peers<const N: usize>(
    network: &MemoryNetwork,
    key: &SigningKey,
    zones: [(u16, &str); N],
) -> [Member; N] {
    zones.map(|(port, zone)| {
        let peer = Member {
            zone: Some(zone.to_owned()),
            ..member(port)
        };
        network.join(peer.peer, replica(key));
        peer
    })
}

/// Node A serving carts over TCP, its peers over `network`; the other members are only
/// replicas on the network. Returns A's client address and its stop handle.
async fn serve_a(
    key: &SigningKey,
    network: &MemoryNetwork,
    others: &[Member],
    timeout: Duration,
) -> (SocketAddr, oneshot::Sender<()>, Replica) {
    serve_a_in(
        None,
        ClusterConfig::default(),
        key,
        network,
        others,
        timeout,
    )
    .await
}

/// [`serve_a`], with A in `zone`, set up with `config`.
async fn serve_a_in(
    zone: Option<&str>,
    config: ClusterConfig,
    key: &SigningKey,
    network: &MemoryNetwork,
    others: &[Member],
    timeout: Duration,
) -> (SocketAddr, oneshot::Sender<()>, Replica) {
    let listener = loopback().await;
    let me = Member {
        rpc: listener.local_addr().unwrap(),
        peer: "127.0.0.1:1".parse().unwrap(),
        zone: zone.map(str::to_owned),
    };
    let mut members = vec![me.clone()];
    members.extend(others.iter().cloned());
    let a = replica(key);
    let placement = ClusterPlacement::new(
        me.clone(),
        a.clone(),
        network.transport(timeout),
        StaticMembership::new(members),
        config,
    );
    let layer = SconeLayer::for_state::<CartState>(key.clone())
        .unwrap()
        .with_placement(placement);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move { cart::serve_with(listener, &layer, "a", stop_rx).await });
    (me.rpc, stop_tx, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_waits_for_the_acknowledgement() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let (b, b_replica) = replica_on(&network, &key, 20_001);
    let (a, stop, _) = serve_a(&key, &network, std::slice::from_ref(&b), LIMIT).await;
    let gate = network.hold_acks(b.peer);

    let call = tokio::spawn(async move {
        let mut client = TokenClient::new();
        let view = client.add(a, "apple", 1).await;
        (view, client)
    });
    // B keeps the copy at once; the reply must still be waiting for B's answer.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while b_replica.store().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the copy never reached B"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!call.is_finished(), "the reply left before B acknowledged");

    gate.release(1);
    let (view, client) = bounded(call).await.unwrap();
    assert_eq!(items(&view.unwrap()), [("apple", 1)]);
    assert_eq!(client.routing().secondaries, [b.rpc]);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_replaced_by_another_peer_and_a_lost_message_times_out() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let (b, c) = (member(20_011), member(20_021));
    let (b_replica, c_replica) = (replica(&key), replica(&key));
    network.join(b.peer, b_replica.clone());
    network.join(c.peer, c_replica.clone());
    let (a, stop, _) = serve_a(
        &key,
        &network,
        &[b.clone(), c.clone()],
        Duration::from_millis(300),
    )
    .await;

    network.cut(b.peer);
    network.cut(c.peer);
    let mut client = TokenClient::new();
    let refusal = client.add(a, "apple", 1).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::NotReplicated, "both links cut");

    network.heal(c.peer);
    client.add(a, "apple", 1).await.unwrap();
    assert_eq!(
        client.routing().secondaries,
        [c.rpc],
        "B's link is still cut"
    );
    assert!(b_replica.store().is_empty());

    // C's next message is lost (and B is still cut): the call waits out the timeout,
    // then is refused; C never saw that version.
    network.drop_next(c.peer, 1);
    let before = c_replica.store().version(&client.routing().session);
    let refusal = client.add(a, "pear", 1).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::NotReplicated);
    assert_eq!(c_replica.store().version(&client.routing().session), before);

    // Healed: the session goes on from the last acknowledged state.
    network.heal(b.peer);
    let view = client.add(a, "plum", 1).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("plum", 1)]);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_takes_the_newer_version_instead_of_refusing_forever() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let (b, b_replica) = replica_on(&network, &key, 20_031);
    let (a, stop, a_replica) = serve_a(&key, &network, std::slice::from_ref(&b), LIMIT).await;
    let mut client = TokenClient::new();
    client.add(a, "apple", 1).await.unwrap();
    let token = client.routing();
    assert_eq!(token.secondaries, [b.rpc]);

    // Attempts the client gave up on made versions v + 1 and v + 2 elsewhere, with B as
    // their secondary: B holds v + 2, A still holds v. (Had B held only v + 1, A's own
    // v + 1 would be a line as good: the higher digest would win.)
    let v1 = a_replica.store().get_scone(&token.session).unwrap();
    let mut other = CartState::default();
    other.items.insert("apple".into(), 1);
    other.items.insert("pear".into(), 1);
    other.changes = 2;
    let minter = scone::Minter::new(key.clone());
    let v2 = minter
        .mint(v1.successor(postcard::to_allocvec(&other).unwrap()))
        .unwrap();
    other.changes = 3;
    let v3 = minter
        .mint(v2.successor(postcard::to_allocvec(&other).unwrap()))
        .unwrap();
    let v2_lineage = Lineage::after(VersionId::of(&v1), &Lineage::default());
    let v3_lineage = Lineage::after(VersionId::of(&v2), &v2_lineage);
    b_replica.keep(v3, v3_lineage, None).unwrap();

    // Served from v, the change cannot be committed: B holds newer. A takes B's version.
    let refusal = client.add(a, "plum", 1).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Superseded);
    // So the next call is served from the newest version, not refused again.
    let view = client.add(a, "plum", 1).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("pear", 1), ("plum", 1)]);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_go_to_another_zone_first() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    // Two peers share A's zone, one is elsewhere: every session's copy goes there.
    let peers = zoned_peers(
        &network,
        &key,
        [(20_041, "z1"), (20_051, "z1"), (20_061, "z2")],
    );
    let config = ClusterConfig::default();
    let (a, stop, _) = serve_a_in(Some("z1"), config, &key, &network, &peers, LIMIT).await;
    for _ in 0..8 {
        let mut client = TokenClient::new();
        client.client = scone::ClientId::random().unwrap();
        client.add(a, "apple", 1).await.unwrap();
        assert_eq!(client.routing().secondaries, [peers[2].rpc]);
    }
    // That zone gone: a peer of A's own zone takes the copy.
    network.crash(peers[2].peer);
    let mut client = TokenClient::new();
    client.add(a, "apple", 1).await.unwrap();
    assert!(client.routing().secondaries[0] != peers[2].rpc);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_secondaries_take_every_copy_while_they_are_up() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    // The pinned peer is in A's own zone; another zone is up: the pin wins over zones
    // and over the order per session.
    let peers = zoned_peers(
        &network,
        &key,
        [(20_071, "z1"), (20_081, "z2"), (20_091, "z2")],
    );
    let config = ClusterConfig {
        pinned_secondaries: vec![peers[0].rpc],
        ..ClusterConfig::default()
    };
    let (a, stop, _) = serve_a_in(Some("z1"), config, &key, &network, &peers, LIMIT).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut client = TokenClient::new();
        client.client = scone::ClientId::random().unwrap();
        client.add(a, "apple", 1).await.unwrap();
        assert_eq!(client.routing().secondaries, [peers[0].rpc]);
        clients.push(client);
    }
    // The pinned peer down: the copy goes elsewhere rather than not at all.
    network.crash(peers[0].peer);
    for client in &mut clients {
        client.add(a, "pear", 1).await.unwrap();
        let secondaries = client.routing().secondaries;
        assert_eq!(secondaries.len(), 1);
        assert_ne!(secondaries[0], peers[0].rpc);
    }
    let _ = stop.send(());
}

/// Batched replication replies before the copy is made: a change is on the primary
/// alone until its batch goes, sent once `max_updates` wait (or `every` passes). The
/// window: the primary lost before that, the change is lost, and the client is told so
/// (`session-unavailable`), never served an older state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_copies_reply_first_and_lose_only_their_window() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let (b, b_replica) = replica_on(&network, &key, 20_101);
    let batched = |every: Duration, max_updates: usize| ClusterConfig {
        batching: Some(scone_cluster::Batching { every, max_updates }),
        ..ClusterConfig::default()
    };
    let others = std::slice::from_ref(&b);

    // Sent when two changes wait: the first waits, the second sends the newest alone.
    let (a, stop, _) = serve_a_in(
        None,
        batched(Duration::from_secs(3600), 2),
        &key,
        &network,
        others,
        LIMIT,
    )
    .await;
    let mut client = TokenClient::new();
    client.add(a, "apple", 1).await.unwrap();
    let session = client.routing().session;
    assert_eq!(
        client.routing().secondaries,
        [b.rpc],
        "the copy's destination"
    );
    assert_eq!(
        b_replica.store().version(&session),
        None,
        "replied before the copy"
    );
    client.add(a, "pear", 1).await.unwrap();
    let sent = client.routing().version_id();
    bounded(async {
        while b_replica.store().get(&session).map(|held| held.id()) != Some(sent) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Inside the window: one more change, and A is lost before its batch goes.
    client.add(a, "plum", 1).await.unwrap();
    let _ = stop.send(());
    // A node that takes over finds B's copy older than the token's: nothing to serve.
    let (survivor, stop_survivor, _) = serve_a(&key, &network, others, LIMIT).await;
    let refusal = client.view(survivor).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::SessionUnavailable);
    let _ = stop_survivor.send(());
    assert_eq!(
        b_replica.store().get(&session).unwrap().id(),
        sent,
        "never rolled back"
    );

    // Sent every 20 ms however few wait.
    let (a, stop, _) = serve_a_in(
        None,
        batched(Duration::from_millis(20), 1000),
        &key,
        &network,
        others,
        LIMIT,
    )
    .await;
    let mut client = TokenClient::new();
    client.add(a, "apple", 1).await.unwrap();
    let token = client.routing();
    bounded(async {
        while b_replica.store().get(&token.session).map(|held| held.id())
            != Some(token.version_id())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let _ = stop.send(());
    let (survivor, stop_survivor, _) = serve_a(&key, &network, others, LIMIT).await;
    let view = client.view(survivor).await.unwrap();
    assert_eq!(items(&view), [("apple", 1)], "past the window: kept");
    let _ = stop_survivor.send(());
}

/// A batched copy its peer does not take (the link is cut) is made again at once on
/// another member, not left on the primary alone until the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_copy_that_fails_is_made_on_another_member() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let (b, b_replica) = replica_on(&network, &key, 20_141);
    let (c, c_replica) = replica_on(&network, &key, 20_151);
    let config = ClusterConfig {
        pinned_secondaries: vec![b.rpc],
        batching: Some(scone_cluster::Batching {
            every: Duration::from_millis(10),
            max_updates: 100,
        }),
        ..ClusterConfig::default()
    };
    let others = [b.clone(), c.clone()];
    let (a, stop, _) = serve_a_in(None, config, &key, &network, &others, LIMIT).await;
    network.cut(b.peer);
    let mut client = TokenClient::new();
    client.add(a, "apple", 1).await.unwrap();
    assert_eq!(client.routing().secondaries, [b.rpc], "meant for B");
    let token = client.routing();
    bounded(async {
        while c_replica.store().get(&token.session).map(|held| held.id())
            != Some(token.version_id())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(b_replica.store().get(&token.session).is_none());
    let _ = stop.send(());
}

/// Re-replication meets a peer holding another line of the session (a fork left by an
/// attempt the client gave up on, outnumbering the acknowledged version): that peer
/// cannot hold this copy, so it goes to the next candidate instead of being counted as
/// made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_another_line_does_not_count_as_a_copy() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let (x, x_replica) = replica_on(&network, &key, 20_111);
    let (y, y_replica) = replica_on(&network, &key, 20_121);
    let a = member(20_131);
    let a_replica = replica(&key);
    network.join(a.peer, a_replica.clone());
    let minter = scone::Minter::new(key.clone());
    let mint = |version: u64, state: &[u8]| {
        minter
            .mint(
                scone::Draft::new(
                    cart::service_id().unwrap(),
                    scone::EndpointId::from_bytes([9; 16]),
                )
                .with_version(version)
                .with_state(state.to_vec()),
            )
            .unwrap()
    };
    let (v1, a2, b2, b3) = (
        mint(1, b"v1"),
        mint(2, b"a2"),
        mint(2, b"b2"),
        mint(3, b"b3"),
    );
    let after =
        |parent: &scone::Scone, lineage: &Lineage| Lineage::after(VersionId::of(parent), lineage);
    let v1_lineage = after(&v1, &Lineage::default());
    a_replica
        .keep(a2.clone(), v1_lineage.clone(), None)
        .unwrap();
    x_replica.keep(b3, after(&b2, &v1_lineage), None).unwrap();

    // X first (pinned), so the pass meets it before Y.
    let config = ClusterConfig {
        pinned_secondaries: vec![x.rpc],
        ..ClusterConfig::default()
    };
    let membership = StaticMembership::new(vec![a.clone(), x.clone(), y.clone()]);
    let placement =
        ClusterPlacement::new(a, a_replica, network.transport(LIMIT), membership, config);
    let report = bounded(placement.rereplicate()).await;
    assert_eq!((report.handed_over, report.short), (1, 0));
    let session = scone_cluster::SessionId::of(&a2);
    assert_eq!(
        y_replica.store().get(&session).unwrap().id(),
        VersionId::of(&a2)
    );
    assert_eq!(
        x_replica.store().get_scone(&session).unwrap().state(),
        b"b3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_one_session_are_serialized_and_none_is_lost() {
    const CLIENTS: usize = 8;
    const ITEMS: usize = 200;
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    // Each copy takes a moment on the wire, so requests in flight overlap at the node
    // (without a lock, they would run from the same version and all but one be refused).
    network.set_delay(Duration::from_millis(2));
    let (b, b_replica) = replica_on(&network, &key, 20_071);
    let (a, stop, a_replica) = serve_a(&key, &network, std::slice::from_ref(&b), LIMIT).await;
    let mut first = TokenClient::new();
    first.add(a, "start", 1).await.unwrap();
    let shared = first.token.clone();

    // Eight clients share the session (the same token) and add 200 distinct items each,
    // all at once.
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut session = TokenClient::new();
                session.token = shared;
                let mut acknowledged = Vec::new();
                let mut refused = Vec::new();
                for item in 0..ITEMS {
                    let name = format!("c{client}-i{item}");
                    match session.add(a, &name, 1).await {
                        Ok(_) => acknowledged.push(name),
                        Err(refusal) => refused.push(refusal.kind),
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    // 1,600 calls one after another on one session: longer than one call's bound.
    let mut acknowledged = Vec::new();
    for task in tasks {
        let (mine, refused) = tokio::time::timeout(12 * LIMIT, task)
            .await
            .expect("the clients finished in time")
            .unwrap();
        assert!(refused.is_empty(), "refused: {refused:?}");
        acknowledged.extend(mine);
    }
    assert_eq!(
        acknowledged.len(),
        CLIENTS * ITEMS,
        "every call went through"
    );

    // Every acknowledged item is in the newest version, on A and on B.
    let session = first.routing().session;
    for holder in [&a_replica, &b_replica] {
        let newest = holder.store().get(&session).unwrap();
        let cart: CartState = postcard::from_bytes(newest.scone().state()).unwrap();
        for item in &acknowledged {
            assert_eq!(cart.items.get(item), Some(&1), "{item} missing");
        }
    }
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_on_a_session_waits_for_the_first_instead_of_forking_it() {
    let key = SigningKey::generate().unwrap();
    let network = MemoryNetwork::new();
    let b = member(20_081);
    network.join(b.peer, replica(&key));
    let (a, stop, _) = serve_a(&key, &network, std::slice::from_ref(&b), LIMIT).await;
    let mut first = TokenClient::new();
    first.add(a, "apple", 1).await.unwrap();
    let shared = first.token.clone();

    // The first request is held at its copy (B keeps it, its answer waits)...
    let gate = network.hold_acks(b.peer);
    let one = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut client = TokenClient::new();
            client.token = shared;
            client.add(a, "pear", 1).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...while a second one on the same session comes in.
    let two = tokio::spawn(async move {
        let mut client = TokenClient::new();
        client.token = shared;
        client.add(a, "plum", 1).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!two.is_finished(), "the second request waits for the first");
    gate.release(2);
    let one = bounded(one).await.unwrap().expect("the first went through");
    let two = bounded(two)
        .await
        .unwrap()
        .expect("the second went through, after it");
    assert_eq!(items(&one), [("apple", 1), ("pear", 1)]);
    assert_eq!(items(&two), [("apple", 1), ("pear", 1), ("plum", 1)]);
    let _ = stop.send(());
}
