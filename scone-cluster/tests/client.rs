//! The client's way in, over TCP: a thin cart client on a `ClusterChannel` keeps only a
//! token, follows it to the primary, and fails over when the primary is gone.

mod common;

use std::time::{Duration, Instant};

use common::*;
use examples::cart::{CartClient, CartState};
use scone::SigningKey;
use scone_cluster::{Ballot, ClusterChannel, ClusterClientConfig, ClusterConfig};
use scone_rpc::SconeClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_client_follows_its_token_and_fails_over_to_the_secondary() {
    let key = SigningKey::generate().unwrap();
    let mut nodes = cluster(3, &key, ClusterConfig::default()).await;
    // It knows one node to start with.
    let config = ClusterClientConfig {
        attempt_timeout: Duration::from_millis(300),
    };
    let channel = ClusterChannel::new(vec![nodes[1].member.rpc], config);
    let stub = SconeClient::thin_for::<CartState>(channel.clone()).unwrap();
    let client_id = stub.client_id();
    let service = stub.service().clone();
    let cart = CartClient::from(stub);
    let add = |item: &'static str| {
        let cart = &cart;
        async move {
            bounded(cart.add(tarpc::context::current(), item.into(), 1))
                .await
                .expect("the call went through")
                .expect("the cart accepted it")
        }
    };

    add("apple").await;
    add("pear").await;
    let token = channel.token(client_id, &service).expect("a token");
    assert_eq!(
        token.primary, nodes[1].member.rpc,
        "served where it first called"
    );
    assert!(
        channel.nodes().contains(&token.secondaries[0]),
        "learned the secondary"
    );

    // The primary goes away: the next call goes to the secondary, which takes over.
    let primary = nodes.remove(1);
    primary.stop().await;
    let started = Instant::now();
    let view = add("plum").await;
    let failover = started.elapsed();
    println!("failover took {failover:?}");
    assert_eq!(items(&view), [("apple", 1), ("pear", 1), ("plum", 1)]);
    let after = channel.token(client_id, &service).unwrap();
    assert_eq!(after.primary, token.secondaries[0]);
    assert!(after.version > token.version);
    // Its first attempt went to the primary that was gone: the change was made by the
    // second attempt from that token, and is known to be.
    let new_primary = nodes
        .iter()
        .find(|node| node.member.rpc == after.primary)
        .unwrap();
    let held = new_primary.replica.store().get(&after.session).unwrap();
    let second = Ballot {
        acknowledged: token.version_id(),
        attempt: 1,
    };
    assert_eq!(held.ballot(), Some(second));
    assert!(
        failover < Duration::from_secs(2),
        "failover took {failover:?}"
    );
    stop_all(nodes).await;
}
