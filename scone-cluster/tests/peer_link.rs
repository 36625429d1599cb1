//! The peer link over TCP on 127.0.0.1: a connection of another protocol is closed
//! before any call, a peer that stops answering fails its calls in time and the next
//! call connects anew, and callers that give up mid-call leave the link usable.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use examples::cart;
use scone::{Draft, EndpointId, Minter, SigningKey};
use scone_cluster::{
    PeerError, PeerTransport, Replica, SessionCopy, SessionId, SessionStore, TcpTransport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A replica trusting `key` for the cart, served on a loopback port until the sender
/// is dropped or fires.
async fn served_replica(
    key: &SigningKey,
) -> (
    Replica,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let keys =
        scone::KeyRing::for_service(cart::service_id().unwrap(), [key.public_key()]).unwrap();
    let replica = Replica::new(SessionStore::new(1_000), keys);
    let listener = loopback().await;
    let peer = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(scone_cluster::serve_peers(
        listener,
        replica.clone(),
        stop_rx,
    ));
    (replica, peer, stop_tx, served)
}

/// A copy of a new cart session, endpoint `n`, signed by `key`.
fn copy_of_session(key: &SigningKey, n: u16) -> SessionCopy {
    let mut endpoint = [0; 16];
    endpoint[..2].copy_from_slice(&n.to_le_bytes());
    let scone = Minter::new(key.clone())
        .mint(Draft::new(
            cart::service_id().unwrap(),
            EndpointId::from_bytes(endpoint),
        ))
        .unwrap();
    SessionCopy::without_lineage(&scone)
}

fn session_of(copy: &SessionCopy) -> SessionId {
    SessionId::of(&scone::Scone::decode(copy.scone.clone()).unwrap())
}

/// A node of another version of the protocol (or anything else that connects) is
/// closed at its first bytes, and never reaches the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_speaks_another_protocol_is_closed_before_any_call() {
    let key = SigningKey::generate().unwrap();
    let (replica, peer, stop, served) = served_replica(&key).await;
    for opening in [
        &b"scone-cluster/2\n"[..],
        // What a node of the tarpc-framed protocol sent first: a frame's length.
        &[0, 0, 1, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7][..],
    ] {
        let mut stream = bounded(tokio::net::TcpStream::connect(peer)).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let mut rest = Vec::new();
        let read = bounded(stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "the node closed the connection without answering: {read:?} {rest:?}"
        );
    }
    assert!(replica.store().is_empty());
    // The node still answers peers of its own protocol.
    let transport = TcpTransport::new(Duration::from_secs(2));
    let copy = copy_of_session(&key, 1);
    let session = session_of(&copy);
    bounded(transport.replicate(peer, copy)).await.unwrap();
    assert!(replica.store().get(&session).is_some());
    let _ = stop.send(());
    bounded(served).await.unwrap().unwrap();
}

/// A peer that takes the connection and then never answers (a paused process): each
/// call fails within a few timeouts, the connection is closed (so the peer, if it comes
/// back, does not keep it), and the next call opens a new connection rather than
/// queueing behind the dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_fails_its_calls_in_time_and_the_next_call_reconnects() {
    let key = SigningKey::generate().unwrap();
    let listener = loopback().await;
    let peer = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (counted, closings) = (Arc::clone(&connections), Arc::clone(&closed));
    let silent = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            // Read everything, answer nothing, close nothing: see whether the caller
            // closes its end once it gives up on the link.
            let closings = Arc::clone(&closings);
            tokio::spawn(async move {
                let mut sink = Vec::new();
                if let Ok(_read) = stream.read_to_end(&mut sink).await {
                    closings.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let timeout = Duration::from_millis(200);
    let transport = TcpTransport::new(timeout);
    for attempt in 1..=2 {
        let started = Instant::now();
        let copies = (0..5).map(|n| transport.replicate(peer, copy_of_session(&key, n)));
        for answer in bounded(futures::future::join_all(copies)).await {
            assert!(
                matches!(answer, Err(PeerError::Unreachable { .. })),
                "attempt {attempt}: {answer:?}"
            );
        }
        let took = started.elapsed();
        assert!(took < timeout * 5, "attempt {attempt} took {took:?}");
        let fetched = bounded(transport.fetch(peer, session_of(&copy_of_session(&key, 9)))).await;
        assert!(matches!(fetched, Err(PeerError::Unreachable { .. })));
    }
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "a failed link is replaced by a new connection"
    );
    // Every connection is closed, the last too, though no call came to replace it and
    // the transport is still in use.
    bounded(async {
        while closed.load(Ordering::SeqCst) < connections.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(transport);
    silent.abort();
}

/// Callers that give up at every point of a call (before, during and after its frame is
/// written) never leave part of a frame on the wire: later calls on the same link are
/// answered, and the peer keeps what they carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_mid_call_leave_the_link_usable() {
    let key = SigningKey::generate().unwrap();
    let (replica, peer, stop, served) = served_replica(&key).await;
    let transport = TcpTransport::new(Duration::from_secs(2));
    bounded(transport.replicate(peer, copy_of_session(&key, 0)))
        .await
        .unwrap();
    for n in 1..200u16 {
        let copy = copy_of_session(&key, n);
        let give_up_after = Duration::from_micros(u64::from(n % 20) * 10);
        let _ = tokio::time::timeout(give_up_after, transport.replicate(peer, copy)).await;
    }
    let last = copy_of_session(&key, 1_000);
    let session = session_of(&last);
    bounded(transport.replicate(peer, last)).await.unwrap();
    assert!(replica.store().get(&session).is_some());
    let fetched = bounded(transport.fetch(peer, session)).await.unwrap();
    assert!(fetched.is_some());
    let _ = stop.send(());
    bounded(served).await.unwrap().unwrap();
}
