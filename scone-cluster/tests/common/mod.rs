//! Shared fixtures: cart nodes of a cluster on 127.0.0.1 (clients and peers over TCP),
//! a client that carries routing tokens, and bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use examples::cart::{self, CartRequest, CartResponse, CartState, CartView};
use scone::{ClientId, KeyRing, SigningKey};
use scone_cluster::{
    ClusterConfig, ClusterPlacement, Member, Replica, RoutingToken, SessionStore, StaticMembership,
    TcpTransport,
};
use scone_rpc::envelope::{
    Outcome, Refusal, RequestEnvelope, ResponseEnvelope, WireScones, ENVELOPE_VERSION,
};
use scone_rpc::SconeLayer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every await that could hang gets this long.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("operation finished within the test's time limit")
}

/// A listener on a fresh loopback port.
pub async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

/// One cart node: its client and peer listeners, and its replica (to look inside).
pub struct Node {
    pub member: Member,
    pub replica: Replica,
    pub placement: ClusterPlacement<TcpTransport, StaticMembership>,
    stop_tx: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Node {
    /// Stops both listeners and waits for them (a node going away; its memory is gone).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            bounded(task).await.unwrap().unwrap();
        }
    }
}

/// Stops every node of `nodes`.
pub async fn stop_all(nodes: Vec<Node>) {
    for node in nodes {
        node.stop().await;
    }
}

/// Listeners for `n` nodes, and the members they make (zone `z0`, `z1`, ... if
/// `zones`).
pub async fn members(n: usize) -> (Vec<(TcpListener, TcpListener)>, Vec<Member>) {
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for _ in 0..n {
        let (rpc, peer) = (loopback().await, loopback().await);
        members.push(Member {
            rpc: rpc.local_addr().unwrap(),
            peer: peer.local_addr().unwrap(),
            zone: None,
        });
        listeners.push((rpc, peer));
    }
    (listeners, members)
}

/// Starts a cart node on `listeners` as `me`, in `membership`, with `config`.
pub fn start_node(
    listeners: (TcpListener, TcpListener),
    me: Member,
    membership: StaticMembership,
    key: &SigningKey,
    config: ClusterConfig,
) -> Node {
    start_node_with(listeners, me, membership, key, config, |replica| replica)
}

/// [`start_node`], its replica set up by `setup` (to take deltas, say).
pub fn start_node_with(
    listeners: (TcpListener, TcpListener),
    me: Member,
    membership: StaticMembership,
    key: &SigningKey,
    config: ClusterConfig,
    setup: impl FnOnce(Replica) -> Replica,
) -> Node {
    let service = cart::service_id().unwrap();
    let keys = KeyRing::for_service(service, [key.public_key()]).unwrap();
    let replica = setup(Replica::new(SessionStore::new(10_000), keys));
    let placement = ClusterPlacement::new(
        me.clone(),
        replica.clone(),
        TcpTransport::new(Duration::from_secs(2)),
        membership,
        config,
    );
    let layer = SconeLayer::for_state::<CartState>(key.clone())
        .unwrap()
        .with_placement(placement.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (peer_stop_tx, peer_stop_rx) = oneshot::channel::<()>();
    let name = me.rpc.to_string();
    let (rpc, peer) = listeners;
    let clients = tokio::spawn(async move {
        let served = cart::serve_with(rpc, &layer, &name, async move {
            let _ = stop_rx.await;
            let _ = peer_stop_tx.send(());
        })
        .await;
        served
    });
    let peers = tokio::spawn(scone_cluster::serve_peers(
        peer,
        replica.clone(),
        peer_stop_rx,
    ));
    Node {
        member: me,
        replica,
        placement,
        stop_tx: Some(stop_tx),
        tasks: vec![clients, peers],
    }
}

/// `n` cart nodes, each knowing all, with `config`.
pub async fn cluster(n: usize, key: &SigningKey, config: ClusterConfig) -> Vec<Node> {
    let (listeners, members) = members(n).await;
    let membership = StaticMembership::new(members.clone());
    listeners
        .into_iter()
        .zip(members)
        .map(|(listeners, me)| start_node(listeners, me, membership.clone(), key, config.clone()))
        .collect()
}

/// A client that carries its session's routing token (and no SCONE), calling whichever
/// node it is told to.
pub struct TokenClient {
    pub client: ClientId,
    pub token: Option<Box<[u8]>>,
    /// The last node called, and the connection to it.
    channel: Option<(SocketAddr, scone_rpc::client::SconeChannel)>,
}

impl TokenClient {
    pub fn new() -> Self {
        Self {
            client: ClientId::from_bytes([5; 16]),
            token: None,
            channel: None,
        }
    }

    /// The token it holds, decoded.
    pub fn routing(&self) -> RoutingToken {
        RoutingToken::decode(self.token.as_deref().expect("a token")).unwrap()
    }

    /// Sends `request` to the node at `addr`; keeps the reply's token.
    pub async fn call(&mut self, addr: SocketAddr, request: CartRequest) -> ResponseEnvelope {
        let channel = match &self.channel {
            Some((open, channel)) if *open == addr => channel.clone(),
            _ => {
                let channel = bounded(scone_rpc::client::connect(addr)).await.unwrap();
                self.channel = Some((addr, channel.clone()));
                channel
            }
        };
        let envelope = RequestEnvelope {
            version: ENVELOPE_VERSION,
            client: self.client,
            service: cart::service_id().unwrap(),
            scones: WireScones::new(),
            token: self.token.clone(),
            body: Bytes::from(postcard::to_allocvec(&request).unwrap()),
        };
        let reply = bounded(channel.call(tarpc::context::current(), envelope))
            .await
            .expect("the call went through");
        if reply.token.is_some() {
            self.token = reply.token.clone();
        }
        reply
    }

    /// Adds `quantity` of `item` at `addr`; the cart, or the refusal.
    pub async fn add(
        &mut self,
        addr: SocketAddr,
        item: &str,
        quantity: u32,
    ) -> Result<CartView, Refusal> {
        let request = CartRequest::Add {
            item: item.into(),
            quantity,
        };
        view_of(self.call(addr, request).await)
    }

    /// The cart as `addr` serves it, or the refusal.
    pub async fn view(&mut self, addr: SocketAddr) -> Result<CartView, Refusal> {
        view_of(self.call(addr, CartRequest::View {}).await)
    }
}

/// The cart of a reply, or its refusal; panics on a cart error.
pub fn view_of(reply: ResponseEnvelope) -> Result<CartView, Refusal> {
    match reply.outcome {
        Outcome::Refused(refusal) => Err(*refusal),
        Outcome::Reply(body) => match postcard::from_bytes::<CartResponse>(&body).unwrap() {
            CartResponse::Add(view)
            | CartResponse::View(view)
            | CartResponse::Remove(view)
            | CartResponse::Checkout(view) => Ok(view.expect("the cart accepted it")),
        },
    }
}

/// The items of a view, as (name, quantity).
pub fn items(view: &CartView) -> Vec<(&str, u32)> {
    view.items.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

/// The node of `nodes` that the token names neither as primary nor as secondary.
pub fn outsider<'a>(nodes: &'a [Node], token: &RoutingToken) -> &'a Node {
    nodes
        .iter()
        .find(|node| {
            node.member.rpc != token.primary && !token.secondaries.contains(&node.member.rpc)
        })
        .expect("a node outside the session's owners")
}

/// A replica of the cart trusting `key`, holding at most `sessions`.
pub fn cart_replica(key: &SigningKey, sessions: usize) -> Replica {
    let keys = KeyRing::for_service(cart::service_id().unwrap(), [key.public_key()]).unwrap();
    Replica::new(SessionStore::new(sessions), keys)
}

/// A replica's peer server alone, on a fresh loopback port.
pub struct ServedReplica {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServedReplica {
    pub async fn start(replica: &Replica) -> Self {
        let listener = loopback().await;
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(scone_cluster::serve_peers(
            listener,
            replica.clone(),
            stopped,
        ));
        Self { addr, stop, task }
    }

    /// Stops it and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        bounded(self.task).await.unwrap().unwrap();
    }
}

/// A delta from `held` to `primary`'s version whose rebuilt SCONE is not the one the
/// primary made (no fields changed, a zeroed signature).
pub fn delta_that_does_not_rebuild(
    primary: &scone::Scone,
    held: &scone_cluster::Held,
) -> scone_cluster::DeltaCopy {
    let mut wrong = scone_cluster::DeltaCopy::new(primary, held.id(), &[], None);
    wrong.delta = postcard::to_allocvec(&scone_rpc::Delta::default()).unwrap();
    wrong.tail = vec![0; wrong.tail.len()];
    wrong
}
