//! A cluster of cart nodes over TCP on 127.0.0.1: each reply's state is on a peer
//! before the reply; failover through the secondary; a node that holds nothing fetches
//! from the owners, or from everyone; stale and forged copies are refused; too few
//! peers is a typed error.

mod common;

use common::*;
use examples::cart;
use scone::{Draft, EndpointId, Minter, SigningKey};
use scone_cluster::{
    ClusterConfig, Lineage, PeerError, PeerTransport, ReplicaRefusal, RoutingToken, SessionCopy,
    Shortfall, StaticMembership, TcpTransport, VersionId,
};
use scone_rpc::envelope::RefusalKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_comes_back_only_with_its_state_on_a_peer() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();

    let view = client.add(nodes[0].member.rpc, "apple", 2).await.unwrap();
    assert_eq!(items(&view), [("apple", 2)]);
    let token = client.routing();
    assert_eq!(token.primary, nodes[0].member.rpc);
    assert_eq!(token.secondaries.len(), 1);
    assert!(!token.is_degraded());
    // At the moment the reply arrived, the secondary held that very version.
    let secondary = nodes
        .iter()
        .find(|node| node.member.rpc == token.secondaries[0])
        .unwrap();
    assert_eq!(
        secondary.replica.store().version(&token.session),
        Some(token.version)
    );
    assert_eq!(
        nodes[0].replica.store().version(&token.session),
        Some(token.version)
    );
    let stats = nodes[0].placement.stats();
    assert_eq!((stats.commits, stats.replications, stats.acks), (1, 1, 1));
    assert_eq!(secondary.placement.stats().copies_kept, 1);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secondary_takes_over_when_the_primary_is_gone() {
    let key = SigningKey::generate().unwrap();
    let mut nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 2).await.unwrap();
    let first = client.routing();

    // The primary goes away; the client calls the secondary its token names.
    let primary = nodes.remove(0);
    primary.stop().await;
    let secondary = first.secondaries[0];
    let view = client.add(secondary, "pear", 1).await.unwrap();
    assert_eq!(items(&view), [("apple", 2), ("pear", 1)]);

    // It served as the new primary and copied the new version to the one live peer.
    let second = client.routing();
    assert_eq!(second.primary, secondary);
    assert!(second.version > first.version);
    let survivor = nodes
        .iter()
        .find(|node| node.member.rpc != secondary)
        .unwrap();
    assert_eq!(second.secondaries, [survivor.member.rpc]);
    assert_eq!(
        survivor.replica.store().version(&second.session),
        Some(second.version)
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_holds_nothing_fetches_from_the_owners() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 2).await.unwrap();
    let token = client.routing();
    let outsider = outsider(&nodes, &token);
    assert_eq!(outsider.replica.store().version(&token.session), None);

    let view = client.view(outsider.member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 2)]);
    assert_eq!(
        outsider.replica.store().version(&token.session),
        Some(token.version),
        "kept what it fetched"
    );
    assert_eq!(outsider.placement.stats().takeovers, 1);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_owners_named_are_gone_a_node_asks_every_member() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 2).await.unwrap();
    let token = client.routing();
    let outsider = outsider(&nodes, &token);

    // A token naming owners that are not members (say, nodes that left): the node
    // asks everyone it knows.
    let nowhere = RoutingToken {
        primary: "127.0.0.1:9".parse().unwrap(),
        secondaries: vec!["127.0.0.1:10".parse().unwrap()],
        ..token.clone()
    };
    client.token = Some(nowhere.encode());
    let view = client.view(outsider.member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 2)]);

    // A version no node holds: refused, never an older state.
    let future = RoutingToken {
        version: token.version + 10,
        ..token
    };
    client.token = Some(future.encode());
    let refusal = client.view(outsider.member.rpc).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::SessionUnavailable);
    assert_eq!(outsider.placement.stats().unavailable, 1);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_refuse_forged_and_older_copies() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(2, &key, ClusterConfig::default()).await;
    let peer = nodes[1].member.peer;
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    let draft = |version| {
        Draft::new(cart::service_id().unwrap(), EndpointId::from_bytes([8; 16]))
            .with_version(version)
    };

    let forged = Minter::new(SigningKey::generate().unwrap())
        .mint(draft(5))
        .unwrap();
    let planted = bounded(transport.replicate(peer, SessionCopy::without_lineage(&forged))).await;
    assert!(
        matches!(
            planted,
            Err(PeerError::Refused {
                refusal: ReplicaRefusal::Untrusted,
                ..
            })
        ),
        "{planted:?}"
    );
    let garbage = bounded(transport.replicate(
        peer,
        SessionCopy {
            scone: vec![1, 2, 3],
            lineage: Default::default(),
            ballot: None,
        },
    ))
    .await;
    assert!(matches!(
        garbage,
        Err(PeerError::Refused {
            refusal: ReplicaRefusal::Untrusted,
            ..
        })
    ));

    let minter = Minter::new(key.clone());
    let newer = minter.mint(draft(5)).unwrap();
    let older = minter.mint(draft(4)).unwrap();
    bounded(transport.replicate(peer, SessionCopy::without_lineage(&newer)))
        .await
        .unwrap();
    let rolled_back =
        bounded(transport.replicate(peer, SessionCopy::without_lineage(&older))).await;
    assert!(matches!(
        rolled_back,
        Err(PeerError::Refused {
            refusal: ReplicaRefusal::Stale,
            ..
        })
    ));
    // The same version again (a retried copy) is fine; another SCONE of that version
    // (a forked primary) is not.
    bounded(transport.replicate(peer, SessionCopy::without_lineage(&newer)))
        .await
        .unwrap();
    let fork = minter.mint(draft(5).with_state(b"other".to_vec())).unwrap();
    let forked = bounded(transport.replicate(peer, SessionCopy::without_lineage(&fork))).await;
    assert!(matches!(
        forked,
        Err(PeerError::Refused {
            refusal: ReplicaRefusal::Forked,
            ..
        })
    ));
    let session = scone_cluster::SessionId::of(&newer);
    assert_eq!(nodes[1].replica.store().version(&session), Some(5));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_served_from_an_old_version_is_refused_as_stale() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(2, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();
    let old = client.token.clone();
    client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();

    // The old token again: the node holds a newer version and serves that one, so the
    // change lands on the newest state, never on the old one.
    client.token = old;
    let view = client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();
    assert_eq!(items(&view), [("apple", 3)]);

    // A client that carries its old SCONE itself (client-held style) is served from it,
    // and the commit finds the newer version held: refused, nothing rolled back.
    let stale_scone = nodes[0]
        .replica
        .store()
        .get_scone(&client.routing().session)
        .unwrap();
    client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();
    let channel = bounded(scone_rpc::client::connect(nodes[0].member.rpc))
        .await
        .unwrap();
    let store = scone_rpc::SconeStore::default();
    store.put(stale_scone);
    let stub = scone_rpc::SconeClient::caching_for::<cart::CartState>(channel, store).unwrap();
    let carrying = cart::CartClient::from(stub);
    let error = bounded(carrying.add(tarpc::context::current(), "apple".into(), 1))
        .await
        .unwrap_err();
    assert_eq!(scone_rpc::refusal(&error), Some(RefusalKind::Superseded));
    let view = client.view(nodes[0].member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 4)]);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_peers_is_a_typed_refusal_or_a_degraded_token() {
    let key = SigningKey::generate().unwrap();
    let (mut listeners, two) = members(2).await;
    let membership = StaticMembership::new(two.clone());
    // Only the first node runs: its one peer is down.
    let (first, _) = (listeners.remove(0), listeners.remove(0));
    let node = start_node(
        first,
        two[0].clone(),
        membership,
        &key,
        ClusterConfig::default(),
    );
    let mut client = TokenClient::new();
    let refusal = client.add(two[0].rpc, "apple", 1).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::NotReplicated);
    assert!(refusal.detail.contains("0 of 1"), "{}", refusal.detail);
    assert!(client.token.is_none());
    assert!(
        node.replica.store().is_empty(),
        "nothing kept for a refused call"
    );
    node.stop().await;

    // Set to reply anyway: the token says the durability is degraded.
    let (mut listeners, two) = members(2).await;
    let membership = StaticMembership::new(two.clone());
    let config = ClusterConfig {
        shortfall: Shortfall::ReplyDegraded,
        ..ClusterConfig::default()
    };
    let node = start_node(
        listeners.remove(0),
        two[0].clone(),
        membership,
        &key,
        config,
    );
    let view = client.add(two[0].rpc, "apple", 1).await.unwrap();
    assert_eq!(items(&view), [("apple", 1)]);
    assert!(client.routing().is_degraded());
    assert!(client.routing().secondaries.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hands_its_sessions_over_before_it_leaves() {
    let key = SigningKey::generate().unwrap();
    let mut nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();
    let token = client.routing();
    // The secondary leaves first: only the primary holds the newest version now.
    let secondary = nodes
        .iter()
        .position(|node| node.member.rpc == token.secondaries[0])
        .unwrap();
    nodes.remove(secondary).stop().await;

    let report = bounded(nodes[0].placement.hand_over()).await;
    assert_eq!((report.handed_over, report.short), (1, 0));
    assert_eq!(
        nodes[1].replica.store().version(&token.session),
        Some(token.version),
        "the one other live node holds it now"
    );
    // The primary leaves too; the last node serves the session.
    let last = nodes.pop().unwrap();
    nodes.pop().unwrap().stop().await;
    let view = client.view(last.member.rpc).await;
    // Alone, it can read but not reach k = 1 copies of a change: reading works.
    assert_eq!(items(&view.unwrap()), [("apple", 1)]);
    last.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_gone_from_every_node_and_the_next_call_starts_anew() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 2).await.unwrap();
    let token = client.routing();

    let last = view_of(
        client
            .call(nodes[0].member.rpc, cart::CartRequest::Checkout {})
            .await,
    );
    assert_eq!(items(&last.unwrap()), [("apple", 2)], "the final cart");
    for node in &nodes {
        assert!(
            node.replica.store().is_ended(&token.session),
            "{}",
            node.member.rpc
        );
        assert_eq!(node.replica.store().version(&token.session), None);
    }
    assert_eq!(nodes[0].placement.stats().ended, 1);

    // The old token, at any node: a new, empty cart (never the ended one).
    for node in &nodes {
        let view = client.view(node.member.rpc).await.unwrap();
        assert_eq!(items(&view), []);
    }
    // And a copy of the ended session sent late is refused.
    let stale = scone_cluster::TcpTransport::new(std::time::Duration::from_secs(2));
    let old = Minter::new(key.clone())
        .mint(
            Draft::new(cart::service_id().unwrap(), token.session.endpoint)
                .with_version(token.version + 1),
        )
        .unwrap();
    let refused =
        bounded(stale.replicate(nodes[1].member.peer, SessionCopy::without_lineage(&old))).await;
    assert!(matches!(
        refused,
        Err(PeerError::Refused {
            refusal: ReplicaRefusal::Ended,
            ..
        })
    ));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_scone_of_the_same_version_is_not_taken_for_the_tokens() {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();
    let token = client.routing();
    let outsider = outsider(&nodes, &token);
    // A fork: the same version with another state, left on the outsider (as an attempt
    // the client gave up on could leave it).
    let acknowledged = nodes[0].replica.store().get_scone(&token.session).unwrap();
    let mut fork = cart::CartState::default();
    fork.items.insert("forged-by-a-lost-attempt".into(), 1);
    let forked = Minter::new(key.clone())
        .mint(
            Draft::new(cart::service_id().unwrap(), token.session.endpoint)
                .with_version(acknowledged.version())
                .with_state(postcard::to_allocvec(&fork).unwrap())
                .with_state_format(scone::StateFormat::Postcard),
        )
        .unwrap();
    outsider
        .replica
        .keep(forked, Default::default(), None)
        .unwrap();

    let view = client.view(outsider.member.rpc).await.unwrap();
    assert_eq!(
        items(&view),
        [("apple", 1)],
        "the acknowledged state, fetched from an owner"
    );
    stop_all(nodes).await;
}

/// A line that forked before the acknowledged version (an attempt the client gave up on,
/// which went on elsewhere) outnumbers it: its version 3 against the acknowledged 2.
/// Ordered by number alone it would replace version 2 on the secondary and be served for
/// the client's token, losing what version 2 acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_version_of_another_line_neither_replaces_nor_serves_the_acknowledged_one() {
    let (key, nodes, mut client, v1) = an_apple_at_version_1().await;
    let session = client.routing().session;
    client.add(nodes[0].member.rpc, "pear", 1).await.unwrap();
    let token = client.routing();
    let secondary = nodes
        .iter()
        .find(|node| node.member.rpc == token.secondaries[0])
        .unwrap();
    let outsider = outsider(&nodes, &token);

    // The other line: v2' and v3' from v1, without the pear.
    let minter = Minter::new(key.clone());
    let mint = |version: u64, items: &[&str]| {
        let mut cart = cart::CartState::default();
        for item in items {
            cart.items.insert((*item).into(), 1);
        }
        minter
            .mint(
                Draft::new(cart::service_id().unwrap(), session.endpoint)
                    .with_version(version)
                    .with_state(postcard::to_allocvec(&cart).unwrap())
                    .with_state_format(scone::StateFormat::Postcard),
            )
            .unwrap()
    };
    let other_v2 = mint(2, &["apple", "lost-attempt"]);
    let other_v3 = mint(3, &["apple", "lost-attempt", "more"]);
    let other_v2_lineage = Lineage::after(v1.id(), v1.lineage());
    let other_v3_lineage = Lineage::after(VersionId::of(&other_v2), &other_v2_lineage);
    let copy = |scone: &scone::Scone, lineage: &Lineage| SessionCopy {
        scone: scone.encoded().to_vec(),
        lineage: lineage.clone(),
        ballot: None,
    };
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    let to_outsider = outsider.member.peer;
    bounded(transport.replicate(to_outsider, copy(&other_v2, &other_v2_lineage)))
        .await
        .unwrap();
    bounded(transport.replicate(to_outsider, copy(&other_v3, &other_v3_lineage)))
        .await
        .unwrap();

    // The secondary, holding the acknowledged version 2, refuses it.
    let refused =
        bounded(transport.replicate(secondary.member.peer, copy(&other_v3, &other_v3_lineage)))
            .await;
    assert!(
        matches!(
            refused,
            Err(PeerError::Refused {
                refusal: ReplicaRefusal::Forked,
                ..
            })
        ),
        "{refused:?}"
    );
    let held = secondary.replica.store().get(&session).unwrap();
    assert_eq!(
        held.id(),
        token.version_id(),
        "the acknowledged version stays"
    );

    // The outsider does not serve it for the token: it fetches the acknowledged one.
    let view = client.view(outsider.member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("pear", 1)]);
    // And a change there replaces the other line (no acknowledged version descends
    // from it) instead of being refused because of it.
    let view = client.add(outsider.member.rpc, "plum", 1).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("pear", 1), ("plum", 1)]);
    let after = client.routing();
    for node in &nodes {
        let holds = node.replica.store().get(&session).map(|held| held.id());
        if after.owners().any(|owner| owner == node.member.rpc) {
            assert_eq!(holds, Some(after.version_id()), "{}", node.member.rpc);
        }
    }
    stop_all(nodes).await;
}

/// Three nodes, and a client whose cart (an apple) is at version 1 on node 0 and its
/// secondary: the key, the nodes, the client, and version 1 as node 0 holds it.
async fn an_apple_at_version_1() -> (SigningKey, Vec<Node>, TokenClient, scone_cluster::Held) {
    let key = SigningKey::generate().unwrap();
    let nodes = cluster(3, &key, ClusterConfig::default()).await;
    let mut client = TokenClient::new();
    client.add(nodes[0].member.rpc, "apple", 1).await.unwrap();
    let session = client.routing().session;
    let v1 = nodes[0].replica.store().get(&session).unwrap();
    (key, nodes, client, v1)
}

/// Version 2 of `session` made from `v1` with `items`, signed by `key` and never committed:
/// what a commit refused after one peer took its copy leaves there.
fn uncommitted_v2(
    key: &SigningKey,
    session: &scone_cluster::SessionId,
    v1: &scone_cluster::Held,
    items: &[&str],
) -> (scone::Scone, SessionCopy) {
    let mut cart = cart::CartState::default();
    for item in items {
        cart.items.insert((*item).into(), 1);
    }
    let scone = Minter::new(key.clone())
        .mint(
            Draft::new(cart::service_id().unwrap(), session.endpoint)
                .with_version(2)
                .with_state(postcard::to_allocvec(&cart).unwrap())
                .with_state_format(scone::StateFormat::Postcard),
        )
        .unwrap();
    let copy = SessionCopy {
        scone: scone.encoded().to_vec(),
        lineage: Lineage::after(v1.id(), v1.lineage()),
        ballot: None,
    };
    (scone, copy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_a_change_no_commit_kept_makes_it_durable_before_the_reply() {
    let (key, nodes, mut client, v1) = an_apple_at_version_1().await;
    let token = client.routing();
    let session = token.session.clone();
    let outsider = outsider(&nodes, &token);
    // Version 2 on the outsider only, as a refused commit leaves it.
    let (v2, copy) = uncommitted_v2(&key, &session, &v1, &["apple", "unconfirmed"]);
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    bounded(transport.replicate(outsider.member.peer, copy))
        .await
        .unwrap();

    // The outsider serves it for the client's token (a later version of its line)...
    let view = client.view(outsider.member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("unconfirmed", 1)]);
    // ...having first copied it to a peer, as a commit would: the reply's token names
    // it, and every node the token names holds it.
    let after = client.routing();
    assert_eq!(
        after.version_id(),
        VersionId::of(&v2),
        "the reply names what it showed"
    );
    assert_eq!(after.primary, outsider.member.rpc);
    assert_eq!(after.secondaries.len(), 1);
    for owner in after.owners() {
        let node = nodes.iter().find(|node| node.member.rpc == owner).unwrap();
        let held = node.replica.store().get(&session).map(|held| held.id());
        assert_eq!(held, Some(VersionId::of(&v2)), "{owner}");
    }
    assert_eq!(outsider.placement.stats().confirmed_reads, 1);
    // A read of the version the token names needs no copy.
    client.view(outsider.member.rpc).await.unwrap();
    assert_eq!(outsider.placement.stats().confirmed_reads, 1);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_never_shows_a_change_that_another_line_replaces() {
    let (key, nodes, mut client, v1) = an_apple_at_version_1().await;
    let token = client.routing();
    let session = token.session.clone();
    let outsider = outsider(&nodes, &token);

    // Another client of the session, from the same version 1, commits version 2 on the
    // primary and the secondary.
    let mut other = TokenClient::new();
    other.token = client.token.clone();
    other.add(nodes[0].member.rpc, "pear", 1).await.unwrap();
    let committed = other.routing().version_id();
    // And a refused commit's version 2, of another line from version 1, is left on the
    // outsider: one that loses the order to the committed one (the order is by digest).
    // The committed digest is random: it is below all of n candidates with chance 1/(n + 1),
    // so n is large (usually the first or second is taken).
    let (refused, copy) = (0..DIGEST_CANDIDATES)
        .map(|n| {
            let attempt = format!("refused-{n}");
            uncommitted_v2(&key, &session, &v1, &["apple", attempt.as_str()])
        })
        .find(|(scone, _)| VersionId::of(scone).digest < committed.digest)
        .expect("one of the candidates' digests is lower");
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    bounded(transport.replicate(outsider.member.peer, copy))
        .await
        .unwrap();
    let refused_item = {
        let state: cart::CartState = postcard::from_bytes(refused.state()).unwrap();
        state
            .items
            .keys()
            .find(|item| *item != "apple")
            .unwrap()
            .clone()
    };

    // The first client reads at the outsider, with its token of version 1: no reply may
    // show the refused change, since the committed line replaces it everywhere.
    let mut shown = Vec::new();
    for _ in 0..3 {
        match client.view(outsider.member.rpc).await {
            Ok(view) => {
                assert!(
                    !view.items.contains_key(&refused_item),
                    "a read showed {refused_item}, a change no commit kept: {:?}",
                    items(&view)
                );
                shown.push(view);
            }
            Err(refusal) => assert_eq!(refusal.kind, RefusalKind::Superseded, "{refusal:?}"),
        }
    }
    let last = shown
        .last()
        .expect("a read went through once the outsider caught up");
    assert_eq!(items(last), [("apple", 1), ("pear", 1)]);
    assert_eq!(
        outsider.replica.store().get(&session).map(|held| held.id()),
        Some(committed)
    );
    stop_all(nodes).await;
}

/// How many versions a test mints to find one whose digest is above (or below) a digest
/// it does not choose: the search fails with chance 1 in `DIGEST_CANDIDATES + 1`.
const DIGEST_CANDIDATES: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_copy_of_an_attempt_the_client_gave_up_on_never_replaces_its_retry() {
    let (key, nodes, mut client, v1) = an_apple_at_version_1().await;
    let token = client.routing();
    let session = token.session.clone();

    // Attempt 0 from version 1 went to a node that was paused with it in its socket:
    // the client gave up, and its retry (attempt 1) was acknowledged on the primary and
    // the secondary.
    client.token = Some(
        RoutingToken {
            attempt: 1,
            ..token.clone()
        }
        .encode(),
    );
    client.add(nodes[0].member.rpc, "pear", 1).await.unwrap();
    let retry = client.routing();
    assert_eq!(retry.version, 2);
    // The paused node wakes and runs attempt 0: its version 2, of another line from
    // version 1, reaches the owners late. One that wins the (version, digest) order, so
    // that only the attempt's number can tell it apart.
    let (late, copy) = (0..DIGEST_CANDIDATES)
        .map(|n| {
            let attempt = format!("gave-up-{n}");
            uncommitted_v2(&key, &session, &v1, &["apple", attempt.as_str()])
        })
        .find(|(scone, _)| VersionId::of(scone).digest > retry.digest)
        .expect("one of the candidates' digests is higher");
    let copy = SessionCopy {
        ballot: Some(token.ballot()),
        ..copy
    };
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    for owner in retry.owners() {
        let node = nodes.iter().find(|node| node.member.rpc == owner).unwrap();
        let refused = bounded(transport.replicate(node.member.peer, copy.clone())).await;
        assert!(
            matches!(
                refused,
                Err(PeerError::Refused {
                    refusal: ReplicaRefusal::Forked,
                    ..
                })
            ),
            "{owner}: {refused:?}"
        );
        let held = node.replica.store().get(&session).map(|held| held.id());
        assert_eq!(
            held,
            Some(retry.version_id()),
            "{owner} kept the retry's version"
        );
    }
    assert_ne!(VersionId::of(&late), retry.version_id());
    let view = client.view(nodes[0].member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("pear", 1)]);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_version_held_is_known_by_its_digest_and_a_forged_one_is_not() {
    let (_key, nodes, client, v1) = an_apple_at_version_1().await;
    let token = client.routing();
    let secondary = nodes
        .iter()
        .find(|node| node.member.rpc == token.secondaries[0])
        .unwrap();
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    // The very version it holds (a retried copy, or a re-replication pass's): taken as
    // held, without a second signature check.
    let again = SessionCopy::of(&v1);
    bounded(transport.replicate(secondary.member.peer, again.clone()))
        .await
        .unwrap();
    assert_eq!(secondary.placement.stats().copies_held_already, 1);
    // The same version with one byte of its signature changed has another digest: it is
    // checked, and refused.
    let mut forged = again;
    *forged.scone.last_mut().unwrap() ^= 1;
    let refused = bounded(transport.replicate(secondary.member.peer, forged)).await;
    assert!(
        matches!(
            refused,
            Err(PeerError::Refused {
                refusal: ReplicaRefusal::Untrusted,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(secondary.placement.stats().copies_held_already, 1);
    let held = secondary.replica.store().get(&token.session).unwrap();
    assert_eq!(held.id(), v1.id());
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cluster_secret_only_peers_that_hold_it_get_through() {
    let key = SigningKey::generate().unwrap();
    let secret = scone_rpc::peer_link::LinkSecret::from_bytes([4; 32]);
    let (rpc, peer) = (loopback().await, loopback().await);
    let peer_addr = peer.local_addr().unwrap();
    drop(rpc);
    let keys =
        scone::KeyRing::for_service(cart::service_id().unwrap(), [key.public_key()]).unwrap();
    let replica = scone_cluster::Replica::new(scone_cluster::SessionStore::new(10), keys);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(scone_cluster::serve_peers_with_secret(
        peer,
        replica.clone(),
        secret.clone(),
        std::time::Duration::from_secs(2),
        stop_rx,
    ));
    let copy = Minter::new(key.clone())
        .mint(Draft::new(
            cart::service_id().unwrap(),
            EndpointId::from_bytes([6; 16]),
        ))
        .unwrap();
    let session = scone_cluster::SessionId::of(&copy);

    // Without the secret, or with another: no call gets through, not even a read.
    let timeout = std::time::Duration::from_secs(2);
    let stranger = TcpTransport::new(timeout);
    let planted = bounded(stranger.replicate(peer_addr, SessionCopy::without_lineage(&copy))).await;
    assert!(
        matches!(planted, Err(PeerError::Unreachable { .. })),
        "{planted:?}"
    );
    let other = TcpTransport::new(timeout)
        .with_secret(scone_rpc::peer_link::LinkSecret::from_bytes([5; 32]));
    let read = bounded(other.fetch(peer_addr, session.clone())).await;
    assert!(
        matches!(read, Err(PeerError::Unreachable { .. })),
        "{read:?}"
    );
    assert!(replica.store().is_empty());

    // With it: copies and reads work.
    let member = TcpTransport::new(timeout).with_secret(secret);
    bounded(member.replicate(peer_addr, SessionCopy::without_lineage(&copy)))
        .await
        .unwrap();
    let fetched = bounded(member.fetch(peer_addr, session)).await.unwrap();
    assert_eq!(
        fetched.map(|fetched| fetched.scone).as_deref(),
        Some(&copy.encoded()[..])
    );
    let _ = stop_tx.send(());
    bounded(served).await.unwrap().unwrap();
}

/// A member is lost and no request comes: the sessions it held a copy of are copied to
/// the members left, and (when too few are left) to the next node that joins, so that a
/// second loss still loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_lost_a_copy_are_copied_again_without_a_request() {
    let key = SigningKey::generate().unwrap();
    let (mut listeners, members) = members(3).await;
    let (a, b, c) = (members[0].clone(), members[1].clone(), members[2].clone());
    let c_listeners = listeners.pop().unwrap();
    let b_listeners = listeners.pop().unwrap();
    let a_listeners = listeners.pop().unwrap();
    let membership = StaticMembership::new(vec![a.clone(), b.clone()]);
    let config = ClusterConfig::default;
    let node_a = start_node(a_listeners, a.clone(), membership.clone(), &key, config());
    let node_b = start_node(b_listeners, b.clone(), membership.clone(), &key, config());
    let every = std::time::Duration::from_millis(20);
    let watcher = node_a.placement.clone();
    let watching = tokio::spawn(async move { watcher.keep_copies(every).await });

    let mut clients = Vec::new();
    for n in 0..20 {
        let mut client = TokenClient::new();
        client.add(a.rpc, &format!("item-{n}"), 1).await.unwrap();
        assert_eq!(client.routing().secondaries, [b.rpc]);
        clients.push(client);
    }
    let held = |node: &Node| {
        clients
            .iter()
            .filter(|client| {
                node.replica
                    .store()
                    .get(&client.routing().session)
                    .is_some()
            })
            .count()
    };

    // B is lost: A alone holds the sessions, and no member is left to copy them to.
    node_b.stop().await;
    membership.set(vec![a.clone()]);
    let passes = |node: &Node| node.placement.stats().recopy_passes;
    bounded(async {
        while passes(&node_a) == 0 {
            tokio::time::sleep(every).await;
        }
    })
    .await;
    assert_eq!(node_a.placement.stats().recopy_short, 20);

    // C joins: A copies every session to it, still without a request.
    let node_c = start_node(c_listeners, c.clone(), membership.clone(), &key, config());
    membership.set(vec![a.clone(), c.clone()]);
    bounded(async {
        while held(&node_c) < clients.len() || passes(&node_a) < 2 {
            tokio::time::sleep(every).await;
        }
    })
    .await;

    // A is lost too: C serves every session, all there.
    watching.abort();
    node_a.stop().await;
    membership.set(vec![c.clone()]);
    for (n, client) in clients.iter_mut().enumerate() {
        let view = client.view(c.rpc).await.unwrap();
        assert_eq!(items(&view), [(format!("item-{n}").as_str(), 1)]);
    }
    node_c.stop().await;
}

/// Cart nodes of one cluster, each taking deltas or not; with `tagged`, each given the
/// signing key, so they check copies by its tag (`Replica::with_issuer_key`).
async fn nodes_taking_deltas<const N: usize>(
    key: &SigningKey,
    deltas: [bool; N],
    tagged: bool,
) -> [Node; N] {
    let (listeners, members) = members(N).await;
    let membership = StaticMembership::new(members.clone());
    let mut listeners = listeners.into_iter();
    let mut members = members.into_iter();
    deltas.map(|deltas| {
        let (listeners, me) = (listeners.next().unwrap(), members.next().unwrap());
        start_node_with(
            listeners,
            me,
            membership.clone(),
            key,
            ClusterConfig::default(),
            |mut replica| {
                if deltas {
                    replica = replica.with_deltas(scone_rpc::state::apply_delta::<cart::CartState>);
                }
                if tagged {
                    replica = replica
                        .with_issuer_key(cart::service_id().unwrap(), key)
                        .unwrap();
                }
                replica
            },
        )
    })
}

/// A secondary that holds the version before gets only the changed fields, and ends up
/// with the very SCONE the primary signed; one that does not take deltas gets the whole
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_in_step_gets_a_delta_and_rebuilds_the_signed_scone() {
    deltas_rebuild_the_signed_scone(false).await;
}

/// The same between members given the signing key: every rebuilt SCONE is checked by
/// its issuer tag, not one signature is, and still a delta that does not rebuild the
/// SCONE the primary made is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_holding_the_key_check_deltas_by_tag() {
    deltas_rebuild_the_signed_scone(true).await;
}

async fn deltas_rebuild_the_signed_scone(tagged: bool) {
    let key = SigningKey::generate().unwrap();
    let [node_a, node_b] = nodes_taking_deltas(&key, [true, true], tagged).await;
    let (a, b) = (node_a.member.clone(), node_b.member.clone());

    let mut client = TokenClient::new();
    client.add(a.rpc, "apple", 1).await.unwrap();
    // A new session: no version before, the whole SCONE.
    assert_eq!(node_a.placement.stats().delta_copies, 0);
    for n in 2..=5 {
        client.add(a.rpc, "apple", 1).await.unwrap();
        let stats = node_a.placement.stats();
        assert_eq!(
            stats.delta_copies,
            n - 1,
            "each change after the first is a delta"
        );
        assert_eq!(stats.delta_fallbacks, 0);
    }
    let session = client.routing().session;
    let primary = node_a.replica.store().get_scone(&session).unwrap();
    let secondary = node_b.replica.store().get_scone(&session).unwrap();
    assert_eq!(
        secondary.encoded(),
        primary.encoded(),
        "rebuilt byte for byte"
    );
    let view = client.view(b.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 5)]);

    // A delta whose rebuilt SCONE the primary did not sign is refused, not kept.
    let held = node_b.replica.store().get(&session).unwrap();
    let sent = node_a.placement.stats();
    assert_eq!((sent.peer_links_opened, sent.peer_links_failed), (1, 0));
    assert_eq!(
        sent.copy_messages, 5,
        "five changes one at a time: a message each"
    );
    let kept = node_b.placement.stats();
    assert_eq!(kept.copies_kept, 5);
    assert_eq!(
        kept.signature_checks,
        if tagged { 0 } else { 5 },
        "every copy, whole or delta, checked by its tag where the key is held"
    );
    let forged = delta_that_does_not_rebuild(&primary, &held);
    let refused = node_b
        .replica
        .accept_item(scone_cluster::CopyItem::Delta(forged));
    assert_eq!(refused, Err(ReplicaRefusal::OutOfStep));
    assert_eq!(
        node_b.replica.store().get(&session).unwrap().id(),
        held.id()
    );
    stop_all(vec![node_a, node_b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_that_cannot_apply_a_delta_gets_the_whole_copy() {
    let key = SigningKey::generate().unwrap();
    // B's replica has no delta applier: it takes whole copies only.
    let [node_a, node_b] = nodes_taking_deltas(&key, [true, false], false).await;
    let a = node_a.member.clone();
    let mut client = TokenClient::new();
    client.add(a.rpc, "apple", 1).await.unwrap();
    client.add(a.rpc, "pear", 1).await.unwrap();
    let stats = node_a.placement.stats();
    assert_eq!((stats.delta_copies, stats.delta_fallbacks), (0, 1));
    let session = client.routing().session;
    assert_eq!(
        node_b.replica.store().get(&session).unwrap().id(),
        client.routing().version_id()
    );
    stop_all(vec![node_a, node_b]).await;
}

/// Stale data after failback (hazelcast-wm #50): the session moves on while its first
/// primary is away; when that node is back, still holding the old version, it does not
/// serve it for the client's token, nor commit a change made from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_a_failover_does_not_serve_its_stale_copy() {
    let key = SigningKey::generate().unwrap();
    let (mut listeners, members) = members(3).await;
    let membership = StaticMembership::new(members.clone());
    let mut nodes = Vec::new();
    for me in &members {
        let config = ClusterConfig::default();
        nodes.push(start_node(
            listeners.remove(0),
            me.clone(),
            membership.clone(),
            &key,
            config,
        ));
    }
    let a = &nodes[0];
    let mut client = TokenClient::new();
    client.add(a.member.rpc, "apple", 1).await.unwrap();
    let old_token = client.token.clone();
    let secondary = client.routing().secondaries[0];

    // A is away (declared dead): the client goes on at the secondary.
    membership.set(members[1..].to_vec());
    client.add(secondary, "pear", 1).await.unwrap();
    client.add(secondary, "plum", 1).await.unwrap();
    let stale = a.replica.store().get(&client.routing().session).unwrap();
    assert!(
        stale.id().version < client.routing().version,
        "A missed the changes"
    );

    // A is back, with its old copy: it serves the newest state for the token.
    membership.set(members.clone());
    let view = client.view(a.member.rpc).await.unwrap();
    assert_eq!(items(&view), [("apple", 1), ("pear", 1), ("plum", 1)]);

    let held = a.replica.store().get(&client.routing().session).unwrap();
    assert_eq!(held.id(), client.routing().version_id(), "and keeps it");

    // A client that still has the old token is served from the newest version too
    // (a later version of the token's line), not from the old one.
    let mut late = TokenClient::new();
    late.token = old_token;
    let view = late.add(a.member.rpc, "fig", 1).await.unwrap();
    assert_eq!(
        items(&view),
        [("apple", 1), ("fig", 1), ("pear", 1), ("plum", 1)]
    );
    stop_all(nodes).await;
}

/// Many copies to one peer at once go out in a few messages (the TCP transport's
/// outbox); each is still answered on its own, in its own right: here every tenth is
/// garbage and is refused while the others are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_sent_together_are_each_answered_on_their_own() {
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 1_000);
    let served = ServedReplica::start(&replica).await;
    let peer = served.addr;
    let transport = TcpTransport::new(std::time::Duration::from_secs(2));
    let minter = Minter::new(key);
    let copies = (0..100u16).map(|n| {
        let mut endpoint = [0; 16];
        endpoint[..2].copy_from_slice(&n.to_le_bytes());
        let scone = minter
            .mint(Draft::new(
                cart::service_id().unwrap(),
                EndpointId::from_bytes(endpoint),
            ))
            .unwrap();
        let mut copy = SessionCopy::without_lineage(&scone);
        if n % 10 == 0 {
            copy.scone = vec![1, 2, 3];
        }
        (n, copy)
    });
    let sends = copies.map(|(n, copy)| {
        let transport = transport.clone();
        async move { (n, transport.replicate(peer, copy).await) }
    });
    for (n, answer) in bounded(futures::future::join_all(sends)).await {
        match answer {
            Ok(()) => assert!(n % 10 != 0, "copy {n} was garbage"),
            Err(PeerError::Refused {
                refusal: ReplicaRefusal::Untrusted,
                ..
            }) => assert!(n % 10 == 0, "copy {n} was valid"),
            Err(error) => panic!("copy {n}: {error}"),
        }
    }
    assert_eq!(replica.store().len(), 90);
    // One connection, none failed, and at most a message per copy (far fewer when
    // they wait while one is on the wire).
    let links = transport.link_stats();
    assert_eq!((links.opened, links.failed), (1, 0));
    assert!((1..=100).contains(&links.copy_messages), "{links:?}");
    served.stop().await;
}
