//! The SCONE side: three cart nodes in this process, each a [`ClusterNode`] with the cart
//! served by scone-rpc in front of it, and a session of the cart reached through a thin
//! client over a [`ClusterChannel`].

use std::net::SocketAddr;
use std::sync::Arc;

use examples::cart::{
    self, Cart as _, CartClient, CartRequest, CartResponse, CartServer, CartState,
};
use scone::{KeyRing, SigningKey};
use scone_cluster::{
    ClusterChannel, ClusterConfig, ClusterNode, Member, NodeConfig, Replicas, StaticMembership,
};
use scone_rpc::server::ServerConfig;
use scone_rpc::{SconeClient, SconeLayer};
use tokio::sync::oneshot;

use crate::{bounded, LIMIT};

/// Items put in each cart before measuring, and the length of their names: a cart of
/// about 256 bytes.
const CART_ITEMS: usize = 8;
const ITEM_NAME_CHARS: usize = 29;

type Cart = CartClient<SconeClient<CartRequest, CartResponse, ClusterChannel>>;

/// Three cart nodes in this process, on a runtime of their own.
pub struct Cluster {
    runtime: tokio::runtime::Runtime,
    /// Client addresses of the nodes.
    pub seeds: Vec<SocketAddr>,
    nodes: Vec<ClusterNode<StaticMembership>>,
    stops: Vec<oneshot::Sender<()>>,
    serving: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Cluster {
    pub fn start(
        key: &SigningKey,
        replicas: usize,
        batching: Option<scone_cluster::Batching>,
        issuer_tags: bool,
        workers: usize,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vs-cluster")
            .enable_all()
            .build()
            .expect("cluster runtime");
        let bind = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        };
        let listeners: Vec<_> = (0..3).map(|_| (bind(), bind())).collect();
        let members: Vec<Member> = listeners
            .iter()
            .map(|(rpc, peer)| Member {
                rpc: rpc.local_addr().expect("rpc address"),
                peer: peer.local_addr().expect("peer address"),
                zone: None,
            })
            .collect();
        let membership = StaticMembership::new(members.clone());
        let service = cart::service_id().expect("cart service ID");
        let keys = KeyRing::for_service(service.clone(), [key.public_key()]).expect("key ring");
        let config = NodeConfig {
            cluster: ClusterConfig {
                replicas: Replicas::Count(replicas),
                batching,
                ..ClusterConfig::default()
            },
            // As `cart-server` sets it: the nodes share the key, so copies are checked by
            // its tag (`scone-signed` leaves it out: every copy's signature is checked).
            issuer_key: issuer_tags.then(|| (service, key.clone())),
            ..NodeConfig::default()
        };
        let entered = runtime.enter();
        let (mut nodes, mut stops, mut serving) = (Vec::new(), Vec::new(), Vec::new());
        for ((rpc, peer), me) in listeners.into_iter().zip(&members) {
            let peer = tokio::net::TcpListener::from_std(peer).expect("peer listener");
            let node = ClusterNode::start(
                me.clone(),
                keys.clone(),
                membership.clone(),
                peer,
                config.clone(),
            )
            .expect("the issuer key is the ring's own");
            let layer = SconeLayer::for_state::<CartState>(key.clone())
                .expect("cart layer")
                .with_placement(node.placement());
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let name: Arc<str> = me.rpc.to_string().into();
            let server_config = ServerConfig {
                workers,
                ..ServerConfig::default()
            };
            serving.push(runtime.spawn(async move {
                let listener = tokio::net::TcpListener::from_std(rpc)?;
                let serve = layer.wrap(CartServer { name }.serve());
                scone_rpc::server::run(listener, serve, server_config, stop_rx).await
            }));
            nodes.push(node);
            stops.push(stop_tx);
        }
        drop(entered);
        Self {
            runtime,
            seeds: members.iter().map(|member| member.rpc).collect(),
            nodes,
            stops,
            serving,
        }
    }

    /// Copies the nodes sent, and the messages that carried them.
    pub fn copies_and_messages(&self) -> (u64, u64) {
        self.nodes.iter().fold((0, 0), |(copies, messages), node| {
            let stats = node.placement().stats();
            (copies + stats.replications, messages + stats.copy_messages)
        })
    }

    /// Stops the client listeners and the peer servers; call it outside any runtime.
    pub fn stop(self) {
        let Self {
            runtime,
            nodes,
            stops,
            serving,
            ..
        } = self;
        drop(stops);
        runtime.block_on(async {
            for task in serving {
                match tokio::time::timeout(LIMIT, task).await {
                    Ok(Ok(Ok(()))) => {}
                    other => eprintln!("warning: a node did not stop cleanly: {other:?}"),
                }
            }
            for node in nodes {
                if let Err(error) = bounded("a node stopping", node.stop()).await {
                    eprintln!("warning: a node's peer server failed: {error}");
                }
            }
        });
    }
}

/// The names of the items in every cart; the first is the one every update adds to.
fn item_names() -> Vec<String> {
    (0..CART_ITEMS)
        .map(|i| format!("{i:02}-{}", "x".repeat(ITEM_NAME_CHARS - 3)))
        .collect()
}

/// The cart's state as postcard after `calls` updates (what the SCONE carries).
pub fn cart_state_bytes(calls: u64) -> usize {
    let mut state = CartState::default();
    for (i, name) in item_names().into_iter().enumerate() {
        let quantity = match i {
            0 => u32::try_from(1 + calls)
                .unwrap_or(u32::MAX)
                .min(cart::MAX_QUANTITY),
            _ => 1,
        };
        state.items.insert(name, quantity);
    }
    state.changes = CART_ITEMS as u64 + calls;
    postcard::to_allocvec(&state).map_or(0, |bytes| bytes.len())
}

/// A session of the cart cluster, reached through a thin client.
pub struct SconeSession {
    cart: Cart,
    hot: String,
    calls: u64,
}

impl SconeSession {
    /// A new session on `channel`, its cart filled with [`CART_ITEMS`] items.
    pub async fn open(channel: ClusterChannel) -> Self {
        let stub = SconeClient::thin_for::<CartState>(channel).expect("a thin cart client");
        let cart = CartClient::from(stub);
        let names = item_names();
        for name in &names {
            let view = bounded(
                "filling a cart",
                cart.add(tarpc::context::current(), name.clone(), 1),
            )
            .await
            .expect("the call went through")
            .expect("the cart accepted it");
            assert!(view.items.contains_key(name));
        }
        Self {
            cart,
            hot: names[0].clone(),
            calls: 0,
        }
    }

    /// One `add` to the first item; whether the reply shows the cart as it should be.
    pub async fn update(&mut self) -> bool {
        let view = bounded(
            "a cart add",
            self.cart
                .add(tarpc::context::current(), self.hot.clone(), 1),
        )
        .await
        .expect("the call went through")
        .expect("the cart accepted it");
        self.calls += 1;
        let expected = u32::try_from(1 + self.calls)
            .unwrap_or(u32::MAX)
            .min(cart::MAX_QUANTITY);
        view.items.len() == CART_ITEMS && view.items.get(&self.hot) == Some(&expected)
    }
}
