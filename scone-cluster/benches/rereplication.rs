//! How long a node takes to copy its sessions again after a member is lost: 3 nodes on
//! loopback (peers over TCP, as in production), k = 1, `RECOPY_SESSIONS` sessions
//! (default 10,000) of 256 B, each on A and one of B or C. B is lost; A and C each run a
//! re-replication pass at once (what `keep_copies` does once membership drops B), and the
//! bench reports how long until both passes end, then checks that every session is on
//! both A and C.
//!
//! `cargo bench -p scone-cluster --bench rereplication`. The time does not include
//! failure detection (gossip declares a node dead in about 1 to 2 s by default).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use scone::{Draft, EndpointId, KeyRing, Minter, ServiceId, SigningKey};
use scone_cluster::{
    ClusterConfig, ClusterPlacement, Lineage, Member, Replica, SessionId, SessionStore,
    StaticMembership, TcpTransport, VersionId,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One node: its placement, and what stops its peer listener.
struct Node {
    placement: ClusterPlacement<TcpTransport, StaticMembership>,
    stop: oneshot::Sender<()>,
}

/// Node `index`'s member, peer listener and replica.
async fn node(
    index: u16,
    keys: &KeyRing,
    sessions: usize,
) -> anyhow::Result<(Member, TcpListener, Replica)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let member = Member {
        // Only a name here: no client is served.
        rpc: SocketAddr::from(([127, 0, 0, 1], 1 + index)),
        peer: listener.local_addr()?,
        zone: None,
    };
    let replica = Replica::new(SessionStore::new(sessions * 2), keys.clone());
    Ok((member, listener, replica))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let sessions: usize = match std::env::var("RECOPY_SESSIONS") {
        Ok(text) => text.parse().context("RECOPY_SESSIONS is a number")?,
        Err(_) => 10_000,
    };
    let key = SigningKey::generate()?;
    let service = ServiceId::new("cart")?;
    let keys = KeyRing::for_service(service.clone(), [key.public_key()])?;
    let membership = StaticMembership::default();
    let mut parts = Vec::new();
    for index in 0..3 {
        parts.push(node(index, &keys, sessions).await?);
    }
    membership.set(parts.iter().map(|(member, ..)| member.clone()).collect());
    let mut nodes = Vec::new();
    for (member, listener, replica) in parts {
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(scone_cluster::serve_peers(
            listener,
            replica.clone(),
            stopped,
        ));
        let placement = ClusterPlacement::new(
            member,
            replica,
            TcpTransport::new(Duration::from_secs(2)),
            membership.clone(),
            ClusterConfig::default(),
        );
        nodes.push(Node { placement, stop });
    }

    // Every session on A, and on B or C, with a full lineage, as commits leave them.
    let minter = Minter::new(key);
    let mut ids = Vec::with_capacity(sessions);
    for n in 0..sessions {
        let mut endpoint = [0u8; 16];
        endpoint[..8].copy_from_slice(&(n as u64).to_le_bytes());
        let scone = minter.mint(
            Draft::new(service.clone(), EndpointId::from_bytes(endpoint))
                .with_version(9)
                .with_state(vec![7u8; 256]),
        )?;
        let mut lineage = Lineage::default();
        for version in 1..9 {
            let ancestor = VersionId {
                version,
                digest: [version as u8; 16],
            };
            lineage = Lineage::after(ancestor, &lineage);
        }
        ids.push(SessionId::of(&scone));
        for holder in [0, 1 + n % 2] {
            let replica = nodes[holder].placement.replica();
            replica.keep(scone.clone(), lineage.clone(), None)?;
        }
    }

    // B is lost.
    let b = nodes.remove(1);
    let _ = b.stop.send(());
    membership.set(vec![
        nodes[0].placement.me().clone(),
        nodes[1].placement.me().clone(),
    ]);
    let started = Instant::now();
    let (a_report, c_report) = tokio::join!(
        nodes[0].placement.rereplicate(),
        nodes[1].placement.rereplicate()
    );
    let took = started.elapsed();
    for node in &nodes {
        let store = node.placement.replica().store();
        let missing = ids.iter().filter(|id| store.get(id).is_none()).count();
        ensure!(
            missing == 0,
            "{} sessions missing on {}",
            missing,
            node.placement.me().rpc
        );
    }
    ensure!(
        a_report.short == 0 && c_report.short == 0,
        "passes fell short"
    );
    println!(
        "rereplication sessions={sessions} took_ms={} per_session_us={:.1} copied_by_a={} copied_by_c={}",
        took.as_millis(),
        took.as_secs_f64() * 1e6 / sessions as f64,
        a_report.handed_over,
        c_report.handed_over,
    );
    Ok(())
}
