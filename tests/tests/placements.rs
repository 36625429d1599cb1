//! One handler, three placements (`ARCHITECTURE.md`, "One pipeline"): the cart's
//! handler, unchanged, with its state held by the client, by a relay in front of
//! client-held servers, and by a cluster, which a relay also fronts without change.
//! Over TCP on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use examples::cart::{self, CartClient, CartState};
use scone::{KeyRing, SigningKey};
use scone_cluster::{
    ClusterChannel, ClusterClientConfig, ClusterNode, Member, NodeConfig, StaticMembership,
};
use scone_router::{Relay, RelayConfig, Route, TrustEntry};
use scone_rpc::{SconeClient, SconeLayer, SconeStore};
use tokio::net::TcpListener;

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Adds one `item` through `cart` and returns the items, as (name, quantity).
async fn add<S>(cart: &CartClient<S>, item: &str) -> Vec<(String, u32)>
where
    S: tarpc::client::stub::Stub<Req = cart::CartRequest, Resp = cart::CartResponse>,
{
    let view = bounded(cart.add(tarpc::context::current(), item.into(), 1))
        .await
        .expect("the call went through")
        .expect("the cart accepted it");
    view.items.into_iter().collect()
}

fn expected(items: &[&str]) -> Vec<(String, u32)> {
    items.iter().map(|item| (item.to_string(), 1)).collect()
}

/// A relay routing the cart to `upstreams`, trusting `key`.
async fn relay(upstreams: Vec<SocketAddr>, key: &SigningKey) -> TestServer {
    let mut config = RelayConfig::default();
    let service = cart::service_id().unwrap();
    config.set_routes([Route {
        service: service.clone(),
        upstreams,
    }]);
    config.set_trust([TrustEntry {
        service,
        key: key.public_key(),
    }]);
    TestServer::start(|listener, stop| async move {
        Relay::new(&config)?.run(listener, stop).await?;
        Ok(())
    })
    .await
}

/// Two cart nodes of a cluster (k = 1), and their client addresses.
async fn cluster(key: &SigningKey) -> (Vec<TestServer>, Vec<ClusterNode<StaticMembership>>) {
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for _ in 0..2 {
        let (rpc, peer) = (loopback().await, loopback().await);
        members.push(Member {
            rpc: rpc.local_addr().unwrap(),
            peer: peer.local_addr().unwrap(),
            zone: None,
        });
        listeners.push((rpc, peer));
    }
    let membership = StaticMembership::new(members.clone());
    let keys = KeyRing::for_service(cart::service_id().unwrap(), [key.public_key()]).unwrap();
    let (mut servers, mut nodes) = (Vec::new(), Vec::new());
    for ((rpc, peer), me) in listeners.into_iter().zip(members) {
        // Peer links proving a cluster secret, as a deployment would set them.
        let config = NodeConfig {
            secret: Some(scone_rpc::peer_link::LinkSecret::from_bytes([7; 32])),
            issuer_key: Some((cart::service_id().unwrap(), key.clone())),
            ..NodeConfig::default()
        };
        let node = ClusterNode::start(me, keys.clone(), membership.clone(), peer, config).unwrap();
        let layer = SconeLayer::for_state::<CartState>(key.clone())
            .unwrap()
            .with_placement(node.placement());
        let name = rpc.local_addr().unwrap().to_string();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            cart::serve_with(rpc, &layer, &name, stop_rx).await?;
            Ok::<_, anyhow::Error>(())
        });
        servers.push(TestServer::from_task(
            node.placement().me().rpc,
            stop_tx,
            task,
        ));
        nodes.push(node);
    }
    (servers, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_handler_runs_client_held_relay_held_and_cluster_held() {
    let key = SigningKey::generate().unwrap();
    let plain = {
        let key = key.clone();
        TestServer::start(|listener, stop| async move {
            cart::serve(listener, key, "plain", stop).await?;
            Ok(())
        })
        .await
    };

    // Client-held: the client keeps its SCONE.
    let channel = bounded(scone_rpc::client::connect(plain.addr))
        .await
        .unwrap();
    let held = CartClient::from(
        SconeClient::caching_for::<CartState>(channel, SconeStore::default()).unwrap(),
    );
    add(&held, "a").await;
    assert_eq!(add(&held, "b").await, expected(&["a", "b"]));

    // Relay-held: a thin client, the relay keeps the SCONE.
    let relay_to_plain = relay(vec![plain.addr], &key).await;
    let channel = bounded(scone_rpc::client::connect(relay_to_plain.addr))
        .await
        .unwrap();
    let thin = CartClient::from(SconeClient::thin_for::<CartState>(channel).unwrap());
    add(&thin, "a").await;
    assert_eq!(add(&thin, "b").await, expected(&["a", "b"]));

    // Cluster-held: a thin client on a cluster channel, which keeps the token.
    let (servers, nodes) = cluster(&key).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
    let channel = ClusterChannel::new(addrs.clone(), ClusterClientConfig::default());
    let clustered = CartClient::from(SconeClient::thin_for::<CartState>(channel).unwrap());
    add(&clustered, "a").await;
    assert_eq!(add(&clustered, "b").await, expected(&["a", "b"]));

    // And the relay, unchanged, in front of the cluster: it passes the token through
    // and sends each call to either node, which finds the session by the token.
    let relay_to_cluster = relay(addrs, &key).await;
    let channel = ClusterChannel::new(
        vec![relay_to_cluster.addr],
        ClusterClientConfig {
            attempt_timeout: Duration::from_secs(2),
        },
    );
    let behind_relay = CartClient::from(SconeClient::thin_for::<CartState>(channel).unwrap());
    for (n, item) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let items = add(&behind_relay, item).await;
        assert_eq!(items.len(), n + 1, "{items:?}");
    }

    relay_to_cluster.stop().await;
    for server in servers {
        server.stop().await;
    }
    for node in nodes {
        bounded(node.stop()).await.unwrap();
    }
    relay_to_plain.stop().await;
    plain.stop().await;
}
