//! The relay mesh over real TCP: a client's state outlives the relay that stored it and
//! a server restart; strangers cannot plant copies; an older copy never wins.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use examples::cart;
use scone::{ClientId, Draft, EndpointId, Minter, Scone, SigningKey};
use scone_router::mesh::{LinkError, MeshError, MeshLink};
use scone_router::{MeshSecret, MeshStore, Relay, RelayConfig, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The secret of the meshes in these tests.
fn secret() -> MeshSecret {
    MeshSecret::from_bytes([9; 32])
}

/// One relay of a mesh: its client listener and its peer listener, both tasks.
struct Node {
    addr: SocketAddr,
    store: MeshStore,
    relay: Relay<MeshStore>,
    stop_tx: oneshot::Sender<()>,
    relay_task: JoinHandle<std::io::Result<()>>,
    mesh_task: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Starts a relay with `config`, serving peers on `mesh`.
    async fn start(config: &RelayConfig, mesh: TcpListener) -> Self {
        let store = MeshStore::new(config).expect("mesh store");
        let relay = Relay::with_store(config, store.clone()).expect("relay");
        let listener = loopback().await;
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (mesh_stop_tx, mesh_stop_rx) = oneshot::channel::<()>();
        let relay_task = tokio::spawn(relay.clone().run(listener, async move {
            let _ = stop_rx.await;
            let _ = mesh_stop_tx.send(());
        }));
        let mesh_task = tokio::spawn(store.clone().run(mesh, mesh_stop_rx));
        Node {
            addr,
            store,
            relay,
            stop_tx,
            relay_task,
            mesh_task,
        }
    }

    /// Stops both listeners and waits for them.
    async fn stop(self) {
        let _ = self.stop_tx.send(());
        bounded(self.relay_task).await.unwrap().unwrap();
        bounded(self.mesh_task).await.unwrap().unwrap();
    }
}

/// `n` relays in front of `upstream`, each the peer of all the others.
async fn mesh_of(n: usize, upstream: SocketAddr, key: &SigningKey) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(loopback().await);
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut config = relay_config(&[upstream], key);
        config.mesh.secret = Some(secret());
        config.mesh.peers = addrs.iter().copied().filter(|&a| a != addrs[i]).collect();
        config.mesh.peer_timeout = Duration::from_secs(2);
        nodes.push(Node::start(&config, listener).await);
    }
    nodes
}

/// A cart SCONE of session `session`, version `version`, signed by `key`.
fn mint(key: &SigningKey, session: u8, version: u64) -> Scone {
    let draft = Draft::new(
        cart::service_id().unwrap(),
        EndpointId::from_bytes([session; 16]),
    )
    .with_version(version);
    Minter::new(key.clone()).mint(draft).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_outlives_the_relay_that_stored_it_and_a_server_restart() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "first").await;
    let upstream = server.addr;
    let mut nodes = mesh_of(3, upstream, &key).await;
    let client = client_id(1);

    // Through A: the reply comes back only once a peer has acknowledged the copy.
    let a = nodes.remove(0);
    let through_a = thin_cart(a.addr, client).await;
    assert_eq!(items(&add(&through_a, "apple", 1).await), [("apple", 1)]);
    assert_eq!(a.store.stats().peer_copies, 1);
    let kept: u64 = nodes.iter().map(|n| n.store.stats().copies_kept).sum();
    assert_eq!(kept, 1, "exactly one peer holds the copy, before the reply");
    drop(through_a);
    a.stop().await;

    // Through B, with A gone: the state is there (held by B, or fetched from C).
    let through_b = thin_cart(nodes[0].addr, client).await;
    assert_eq!(items(&view(&through_b).await), [("apple", 1)]);
    assert_eq!(
        items(&add(&through_b, "pear", 2).await),
        [("apple", 1), ("pear", 2)]
    );

    // The server restarts on the same address: still there.
    server.stop().await;
    let listener = bounded(TcpListener::bind(upstream)).await.unwrap();
    let server = cart_on(listener, &key, "second");
    assert_eq!(items(&view(&through_b).await), [("apple", 1), ("pear", 2)]);

    // And a new client process (same ID) through C sees the newest state.
    let through_c = thin_cart(nodes[1].addr, client).await;
    assert_eq!(items(&view(&through_c).await), [("apple", 1), ("pear", 2)]);
    // Another client ID gets nothing of it.
    let stranger = thin_cart(nodes[1].addr, client_id(2)).await;
    assert_eq!(items(&view(&stranger).await), []);

    for node in nodes {
        assert_eq!(node.relay.stats().forged_dropped, 0);
        node.stop().await;
    }
    server.stop().await;
}

/// A lone mesh node trusting `key` for the cart, and its peer address.
async fn lone_node(key: &SigningKey) -> (Node, SocketAddr) {
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    let mut config = relay_config(&["127.0.0.1:9".parse().unwrap()], key);
    config.mesh.secret = Some(secret());
    config.mesh.peer_timeout = Duration::from_secs(2);
    (Node::start(&config, listener).await, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_without_the_secret_cannot_plant_a_copy() {
    let key = SigningKey::generate().unwrap();
    let (node, mesh_addr) = lone_node(&key).await;
    let timeout = Duration::from_secs(2);

    // Without the secret, the link is refused at the handshake: no call gets through.
    let wrong = MeshSecret::from_bytes([8; 32]);
    let refused = bounded(MeshLink::connect(mesh_addr, &wrong, timeout)).await;
    assert!(
        matches!(refused, Err(LinkError::Unreachable(_))),
        "{refused:?}"
    );
    // Nor does a peer that skips the handshake and sends a request frame at once.
    let mut raw = bounded(tokio::net::TcpStream::connect(mesh_addr))
        .await
        .unwrap();
    raw.write_all(&[0; 64]).await.unwrap();
    let mut rest = Vec::new();
    let _ = bounded(raw.read_to_end(&mut rest)).await;
    assert_eq!(rest.len(), 32, "only the challenge, then closed");
    assert!(node.store.local().cache().is_empty());

    // With the secret, a SCONE signed by a key not trusted for its service is refused.
    let link = bounded(MeshLink::connect(mesh_addr, &secret(), timeout))
        .await
        .unwrap();
    let forged = mint(&SigningKey::generate().unwrap(), 1, 5);
    let planted = bounded(link.store(client_id(1), &forged)).await;
    assert!(
        matches!(planted, Err(LinkError::Refused(MeshError::Untrusted))),
        "{planted:?}"
    );
    assert!(node.store.local().cache().is_empty());
    assert_eq!(node.store.stats().peer_untrusted, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_copy_never_replaces_a_newer_one() {
    let key = SigningKey::generate().unwrap();
    let (node, mesh_addr) = lone_node(&key).await;
    let link = bounded(MeshLink::connect(
        mesh_addr,
        &secret(),
        Duration::from_secs(2),
    ))
    .await
    .unwrap();
    let client: ClientId = client_id(1);
    let version = |bytes: Option<Vec<u8>>| Scone::decode(bytes.unwrap()).unwrap().version();
    let service = cart::service_id().unwrap();

    bounded(link.store(client, &mint(&key, 1, 2)))
        .await
        .unwrap();
    let older = bounded(link.store(client, &mint(&key, 1, 1))).await;
    assert!(
        matches!(older, Err(LinkError::Refused(MeshError::Stale))),
        "{older:?}"
    );
    assert_eq!(
        version(bounded(link.query(client, &service)).await.unwrap()),
        2
    );
    bounded(link.store(client, &mint(&key, 1, 3)))
        .await
        .unwrap();
    assert_eq!(
        version(bounded(link.query(client, &service)).await.unwrap()),
        3
    );
    // The relay's own store agrees, and another client has nothing.
    let held = node.store.get(&(client, service.clone())).await.unwrap();
    assert_eq!(held.version(), 3);
    assert!(bounded(link.query(client_id(2), &service))
        .await
        .unwrap()
        .is_none());
    assert_eq!(node.store.stats().copies_stale, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_misses_asks_its_peers_and_fast_mode_copies_after_the_reply() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    // A copies to B, its only peer, after replying (fast). D knows B only, and holds
    // nothing: it must ask.
    let (a_mesh, b_mesh, d_mesh) = (loopback().await, loopback().await, loopback().await);
    let b_addr = b_mesh.local_addr().unwrap();
    let config = |peers: Vec<SocketAddr>, fast| {
        let mut config = relay_config(&[server.addr], &key);
        config.mesh.secret = Some(secret());
        config.mesh.peers = peers;
        config.mesh.fast = fast;
        config.mesh.peer_timeout = Duration::from_secs(2);
        config
    };
    let a = Node::start(&config(vec![b_addr], true), a_mesh).await;
    let b = Node::start(&config(vec![], false), b_mesh).await;
    let d = Node::start(&config(vec![b_addr], false), d_mesh).await;
    let client = client_id(1);

    let through_a = thin_cart(a.addr, client).await;
    assert_eq!(items(&add(&through_a, "apple", 1).await), [("apple", 1)]);
    // Fast mode: the copy lands after the reply.
    wait_until("B keeps A's copy and A has the ack", || {
        b.store.stats().copies_kept == 1 && a.store.stats().peer_copies == 1
    })
    .await;

    let through_d = thin_cart(d.addr, client).await;
    assert_eq!(items(&view(&through_d).await), [("apple", 1)]);
    let stats = d.store.stats();
    assert_eq!((stats.peer_queries, stats.peer_query_hits), (1, 1));
    // Fetched, verified and kept: the next miss is local.
    assert_eq!(d.store.local().cache().len(), 1);
    assert_eq!(items(&view(&through_d).await), [("apple", 1)]);
    assert_eq!(d.store.stats().peer_queries, 1);
    // A client nobody holds: D asks, finds nothing, and the call still goes on.
    let other = thin_cart(d.addr, client_id(2)).await;
    assert_eq!(items(&view(&other).await), []);
    assert_eq!(d.store.stats().peer_query_hits, 1);

    for node in [a, b, d] {
        node.stop().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scone_the_server_refuses_is_forgotten_on_peers_too() {
    // The cart's key is rotated with no overlap; the relays trust both keys. Without
    // forgetting on peers, each miss would fetch the refused SCONE back: a lockout.
    let (old_key, new_key) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let server = cart_server(&old_key, "old").await;
    let upstream = server.addr;
    let (a_mesh, b_mesh) = (loopback().await, loopback().await);
    let (a_addr, b_addr) = (a_mesh.local_addr().unwrap(), b_mesh.local_addr().unwrap());
    let config = |peer| {
        let mut config = relay_config(&[upstream], &old_key);
        config.trust.push(scone_router::TrustEntry {
            service: cart::service_id().unwrap(),
            key: new_key.public_key(),
        });
        config.mesh.secret = Some(secret());
        config.mesh.peers = vec![peer];
        config.mesh.peer_timeout = Duration::from_secs(2);
        config
    };
    let a = Node::start(&config(b_addr), a_mesh).await;
    let b = Node::start(&config(a_addr), b_mesh).await;
    let client = thin_cart(a.addr, client_id(1)).await;
    add(&client, "apple", 1).await;
    assert_eq!(b.store.local().cache().len(), 1);

    server.stop().await;
    let listener = bounded(TcpListener::bind(upstream)).await.unwrap();
    let server = cart_on(listener, &new_key, "new");
    // One call is refused (A attached the old key's SCONE); it is dropped on A and B...
    assert!(bounded(client.view(tarpc::context::current()))
        .await
        .is_err());
    assert_eq!(a.relay.stats().refused_dropped, 1);
    assert!(b.store.local().cache().is_empty());
    // ...so the session starts over under the new key, held again on both.
    assert_eq!(items(&view(&client).await), []);
    assert_eq!(items(&add(&client, "pear", 1).await), [("pear", 1)]);
    assert_eq!(items(&view(&client).await), [("pear", 1)]);
    for node in [a, b] {
        node.stop().await;
    }
    server.stop().await;
}
