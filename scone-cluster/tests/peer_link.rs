//! The peer link over TCP on 127.0.0.1: a connection of another protocol is closed
//! before any call, a peer that stops answering fails its calls in time and the next
//! call connects anew, callers that give up mid-call (or whose runtime stops) leave the
//! link usable, each server worker has a link of its own (and a link nobody reads the
//! answers of is replaced), and a replica that checks copies by the issuer tag still
//! refuses forgeries.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use examples::cart;
use scone::{Draft, EndpointId, Minter, MinterConfig, SigningKey};
use scone_cluster::{
    IssuerKeyError, PeerError, PeerTransport, ReplicaRefusal, SessionCopy, SessionId, TcpTransport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A single-threaded runtime.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-thread runtime serving `replica` to peers; the runtime and the served replica.
fn serve_on_its_own_runtime(
    replica: &scone_cluster::Replica,
) -> (tokio::runtime::Runtime, ServedReplica) {
    let peer = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let served = peer.block_on(ServedReplica::start(replica));
    (peer, served)
}

/// A node of another version of the protocol (or anything else that connects) is
/// closed at its first bytes, and never reaches the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_speaks_another_protocol_is_closed_before_any_call() {
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 1_000);
    let served = ServedReplica::start(&replica).await;
    let peer = served.addr;
    for opening in [
        &b"scone-cluster/2\n"[..],
        // The version before, whose deltas carried one more field.
        &b"scone-cluster/3\n"[..],
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
    served.stop().await;
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
    let links = transport.link_stats();
    assert!(links.opened >= 2 && links.failed >= 2, "{links:?}");
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
    let replica = cart_replica(&key, 1_000);
    let served = ServedReplica::start(&replica).await;
    let peer = served.addr;
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
    served.stop().await;
}

/// A replica given the service's signing key (one it trusts) checks copies by their issuer tag, over
/// TCP, without a single signature check, and still keeps nothing the key did not make:
/// neither a copy altered after it was minted (its tag no longer matches, nor does its
/// signature) nor one signed by another key. A copy of the key's that carries no tag is
/// checked by its signature instead, and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holding_the_key_checks_tags_and_still_refuses_forgeries() {
    let key = SigningKey::generate().unwrap();
    // A key the replica does not trust is refused as its issuer key: checking tags
    // changes how copies are checked, never which are taken.
    let untrusting = cart_replica(&SigningKey::generate().unwrap(), 100)
        .with_issuer_key(cart::service_id().unwrap(), &key);
    assert!(
        matches!(untrusting, Err(IssuerKeyError::NotTrusted { key_id, .. }) if key_id == key.key_id()),
        "{:?}",
        untrusting.err()
    );

    let replica = cart_replica(&key, 100)
        .with_issuer_key(cart::service_id().unwrap(), &key)
        .unwrap();
    let served = ServedReplica::start(&replica).await;
    let transport = TcpTransport::new(Duration::from_secs(2));
    let refused = |answer: &Result<(), PeerError>| {
        matches!(
            answer,
            Err(PeerError::Refused {
                refusal: ReplicaRefusal::Untrusted,
                ..
            })
        )
    };

    bounded(transport.replicate(served.addr, copy_of_session(&key, 1)))
        .await
        .unwrap();
    assert_eq!(replica.stats().signature_checks, 0, "checked by its tag");

    let minted = Minter::new(key.clone())
        .mint(
            Draft::new(cart::service_id().unwrap(), EndpointId::from_bytes([2; 16]))
                .with_state(b"one apple".to_vec()),
        )
        .unwrap();
    let mut altered = minted.encoded().to_vec();
    altered[minted.state_range().start] ^= 1;
    let altered = SessionCopy {
        scone: altered,
        ..SessionCopy::without_lineage(&minted)
    };
    let answer = bounded(transport.replicate(served.addr, altered)).await;
    assert!(refused(&answer), "an altered copy: {answer:?}");
    let foreign = SigningKey::generate().unwrap();
    let answer = bounded(transport.replicate(served.addr, copy_of_session(&foreign, 3))).await;
    assert!(refused(&answer), "another key's copy: {answer:?}");
    assert_eq!(replica.store().len(), 1);

    let untagged = Minter::new(key.clone())
        .with_config(MinterConfig {
            issuer_tag: false,
            ..MinterConfig::default()
        })
        .mint(Draft::new(
            cart::service_id().unwrap(),
            EndpointId::from_bytes([4; 16]),
        ))
        .unwrap();
    bounded(transport.replicate(served.addr, SessionCopy::without_lineage(&untagged)))
        .await
        .unwrap();
    assert_eq!(replica.store().len(), 2);
    assert_eq!(
        replica.stats().signature_checks,
        1,
        "only the untagged copy's signature is checked"
    );
    served.stop().await;
}

/// A copy whose sending task never runs (its runtime stopped first: a server's worker
/// shutting down while the node lives on) fails the link instead of leaving it waiting
/// for a message that will never go: the next copy, from another runtime, opens a new
/// link and is kept, rather than queueing behind it until it times out.
#[test]
fn a_copy_whose_runtime_stops_before_it_is_sent_does_not_strand_the_link() {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    let node = runtime("node");
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 100);
    let served = node.block_on(ServedReplica::start(&replica));
    // Long enough that a copy stuck behind the stranded one would fail this test's bound.
    let transport = TcpTransport::new(Duration::from_secs(5));
    node.block_on(bounded(
        transport.replicate(served.addr, copy_of_session(&key, 1)),
    ))
    .unwrap();

    let stopping = runtime("stopping");
    let queued = stopping.block_on(async {
        use futures::FutureExt;
        // Queued, its sending task spawned here, and given up on before that task runs.
        transport
            .replicate(served.addr, copy_of_session(&key, 2))
            .now_or_never()
    });
    assert!(queued.is_none(), "the copy was only queued");
    drop(stopping);

    let started = Instant::now();
    node.block_on(async {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            transport.replicate(served.addr, copy_of_session(&key, 3)),
        )
        .await;
        assert!(
            matches!(answer, Ok(Ok(()))),
            "the next copy goes through at once: {answer:?}"
        );
    });
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(replica.store().len(), 2, "copies 1 and 3");
    let links = transport.link_stats();
    assert_eq!((links.opened, links.failed), (2, 1), "{links:?}");
    node.block_on(served.stop());
}

/// Each thread that calls a peer from a single-threaded runtime (as a server's workers
/// do) has a link of its own, whose answers its own runtime reads (so a copy's answer
/// wakes its caller without a hop to another thread): two threads open two links, and
/// one thread's calls reuse its link. A runtime that stops takes its link with it,
/// failed (no one would read its answers), and leaves the other thread's link open: its
/// next copy goes through at once.
#[test]
fn each_calling_thread_has_a_link_of_its_own() {
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 100);
    let (peer, served) = serve_on_its_own_runtime(&replica);
    let addr = served.addr;
    let transport = TcpTransport::new(Duration::from_secs(5));
    let copy = |transport: &TcpTransport, runtime: &tokio::runtime::Runtime, n: u16| {
        runtime.block_on(bounded(transport.replicate(addr, copy_of_session(&key, n))))
    };

    let (copied, copied_rx) = std::sync::mpsc::channel::<()>();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn({
        let (transport, key) = (transport.clone(), key.clone());
        move || {
            let runtime = current_thread_runtime();
            let copy = |n: u16| {
                runtime.block_on(bounded(transport.replicate(addr, copy_of_session(&key, n))))
            };
            copy(1).unwrap();
            copied.send(()).unwrap();
            go_rx.recv_timeout(LIMIT).unwrap();
            copy(3).unwrap();
            // Its runtime stops here, with the task reading its link's answers.
        }
    });
    copied_rx.recv_timeout(LIMIT).unwrap();
    let here = current_thread_runtime();
    copy(&transport, &here, 2).unwrap();
    let links = transport.link_stats();
    assert_eq!(
        (links.opened, links.failed),
        (2, 0),
        "a link per thread: {links:?}"
    );

    go.send(()).unwrap();
    other.join().unwrap();
    let links = transport.link_stats();
    assert_eq!(
        (links.opened, links.failed),
        (2, 1),
        "the other thread reused its link, which failed as its runtime stopped: {links:?}"
    );

    let started = Instant::now();
    copy(&transport, &here, 4).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let links = transport.link_stats();
    assert_eq!(
        (links.opened, links.failed),
        (2, 1),
        "this thread's link is still open: {links:?}"
    );
    assert_eq!(replica.store().len(), 4);
    peer.block_on(served.stop());
}

/// A link whose runtime stopped (the task reading its answers went with it) is failed
/// then, so the next call from the same thread, on another runtime, opens a new link at
/// once instead of waiting on one whose answers nobody reads.
#[test]
fn a_link_whose_runtime_stops_is_replaced_at_the_next_call() {
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 100);
    let (peer, served) = serve_on_its_own_runtime(&replica);
    let transport = TcpTransport::new(Duration::from_secs(5));
    let first = current_thread_runtime();
    first
        .block_on(bounded(
            transport.replicate(served.addr, copy_of_session(&key, 1)),
        ))
        .unwrap();
    drop(first);
    let links = transport.link_stats();
    assert_eq!((links.opened, links.failed), (1, 1), "{links:?}");

    let started = Instant::now();
    let next = current_thread_runtime();
    next.block_on(bounded(
        transport.replicate(served.addr, copy_of_session(&key, 2)),
    ))
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let links = transport.link_stats();
    assert_eq!(
        (links.opened, links.failed),
        (2, 1),
        "a new link: {links:?}"
    );
    assert_eq!(replica.store().len(), 2);
    peer.block_on(served.stop());
}

/// A call that waits past its bound fails its link, so the calls after it do not wait
/// too: here the link's answers are read by a runtime that is alive but not running (the
/// same thread opened the link on it, then calls from another), so nobody reads them.
#[test]
fn a_call_nobody_reads_the_answer_of_fails_its_link_in_time() {
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 100);
    let (peer, served) = serve_on_its_own_runtime(&replica);
    let timeout = Duration::from_millis(200);
    let transport = TcpTransport::new(timeout);
    let idle = current_thread_runtime();
    idle.block_on(bounded(
        transport.replicate(served.addr, copy_of_session(&key, 1)),
    ))
    .unwrap();

    let calling = current_thread_runtime();
    let unread = calling.block_on(bounded(
        transport.replicate(served.addr, copy_of_session(&key, 2)),
    ));
    assert!(
        matches!(unread, Err(PeerError::Unreachable { .. })),
        "its answer was never read: {unread:?}"
    );
    let started = Instant::now();
    calling
        .block_on(bounded(
            transport.replicate(served.addr, copy_of_session(&key, 3)),
        ))
        .unwrap();
    // Without the link failed, it would wait out the same bound (and fail).
    assert!(
        started.elapsed() < timeout * 4,
        "the next copy went on a new link at once"
    );
    let links = transport.link_stats();
    assert_eq!((links.opened, links.failed), (2, 1), "{links:?}");
    assert_eq!(
        replica.store().len(),
        3,
        "copy 2 was kept; only its answer was lost"
    );
    drop(idle);
    peer.block_on(served.stop());
}

/// Callers on a multi-thread runtime share one link to a peer, whatever thread they run
/// on (its tasks move between threads, so a link each would only split the batches):
/// here the thread that blocks on the runtime and the runtime's own worker.
#[test]
fn callers_on_a_multi_thread_runtime_share_one_link() {
    let key = SigningKey::generate().unwrap();
    let replica = cart_replica(&key, 100);
    let (peer, served) = serve_on_its_own_runtime(&replica);
    let transport = TcpTransport::new(Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = served.addr;
    runtime.block_on(async {
        // On the thread that blocks on the runtime...
        bounded(transport.replicate(addr, copy_of_session(&key, 1)))
            .await
            .unwrap();
        // ... and on the runtime's worker.
        let (transport, key) = (transport.clone(), key.clone());
        let on_worker = tokio::spawn(async move {
            let worker = std::thread::current().id();
            transport
                .replicate(addr, copy_of_session(&key, 2))
                .await
                .map(|()| worker)
        });
        let worker = bounded(on_worker).await.unwrap().unwrap();
        assert_ne!(worker, std::thread::current().id(), "two threads called");
    });
    let links = transport.link_stats();
    assert_eq!((links.opened, links.failed), (1, 0), "{links:?}");
    assert_eq!(replica.store().len(), 2);
    drop(runtime);
    peer.block_on(served.stop());
}
