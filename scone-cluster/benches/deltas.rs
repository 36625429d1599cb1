//! Bytes copied to the secondary per update, delta against whole copy: a state of a
//! 4 KiB page and a visit counter, each update changing the counter only. Two clusters
//! of 2 nodes (k = 1, over TCP on loopback) run side by side in one process, one whose
//! replicas take deltas and one whose replicas do not; each gets the same updates.
//!
//! `cargo bench -p scone-cluster --bench deltas` ends with one line
//! `bytes_per_update delta=D full=F ratio=R` (R = D / F). `DELTAS_UPDATES` sets the
//! updates per cluster (default 500).

use std::time::{Duration, Instant};

use anyhow::Context;
use scone::{KeyRing, SigningKey};
use scone_cluster::{
    ClusterChannel, ClusterClientConfig, ClusterConfig, ClusterPlacement, Member, Replica,
    SessionStore, StaticMembership, TcpTransport,
};
use scone_rpc::server::ServerConfig;
use scone_rpc::state::SconeState;
use scone_rpc::{SconeClient, SconeLayer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The per-session state: a large page that stays, and a counter that moves.
#[derive(SconeState, Serialize, Deserialize, Default, Debug, Clone)]
#[scone(service = "notes")]
struct Notes {
    page: Vec<u8>,
    visits: u64,
}

/// Bytes in the page.
const PAGE_BYTES: usize = 4096;

#[tarpc::service]
trait Pages {
    /// Counts a visit (writing the page on the first); returns the count.
    async fn visit() -> u64;
}

#[derive(Clone)]
struct PagesServer;

impl Pages for PagesServer {
    async fn visit(self, _: tarpc::context::Context) -> u64 {
        let Ok(mut notes) = Notes::load() else {
            return 0;
        };
        if notes.page.is_empty() {
            *notes.page_mut() = vec![b'n'; PAGE_BYTES];
        }
        *notes.visits_mut() += 1;
        let visits = notes.visits;
        match notes.save() {
            Ok(_) => visits,
            Err(_) => 0,
        }
    }
}

/// A 2-node cluster; returns the first node's placement (the primary: the client calls
/// it first) and its client address list.
async fn cluster(
    key: &SigningKey,
    deltas: bool,
) -> anyhow::Result<(
    ClusterPlacement<TcpTransport, StaticMembership>,
    Vec<std::net::SocketAddr>,
)> {
    let keys = KeyRing::for_service(Notes::service_id()?, [key.public_key()])?;
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for _ in 0..2 {
        let (rpc, peer) = (
            TcpListener::bind("127.0.0.1:0").await?,
            TcpListener::bind("127.0.0.1:0").await?,
        );
        members.push(Member {
            rpc: rpc.local_addr()?,
            peer: peer.local_addr()?,
            zone: None,
        });
        listeners.push((rpc, peer));
    }
    let membership = StaticMembership::new(members.clone());
    let mut first = None;
    for ((rpc, peer), me) in listeners.into_iter().zip(members.clone()) {
        let mut replica = Replica::new(SessionStore::new(1024), keys.clone());
        if deltas {
            replica = replica.with_deltas(scone_rpc::state::apply_delta::<Notes>);
        }
        let placement = ClusterPlacement::new(
            me,
            replica.clone(),
            TcpTransport::new(Duration::from_secs(2)),
            membership.clone(),
            ClusterConfig::default(),
        );
        first.get_or_insert_with(|| placement.clone());
        let layer = SconeLayer::for_state::<Notes>(key.clone())?.with_placement(placement);
        tokio::spawn(scone_cluster::serve_peers(
            peer,
            replica,
            std::future::pending::<()>(),
        ));
        tokio::spawn(async move {
            let serve = layer.wrap(PagesServer.serve());
            scone_rpc::server::run(
                rpc,
                serve,
                ServerConfig::default(),
                std::future::pending::<()>(),
            )
            .await
        });
    }
    let first = first.context("a node")?;
    Ok((first, members.iter().map(|member| member.rpc).collect()))
}

/// Runs `updates` visits on one session; bytes copied per update (after the first,
/// which creates the session), and the mean time per update.
async fn run(key: &SigningKey, deltas: bool, updates: u64) -> anyhow::Result<(f64, Duration)> {
    let (primary, nodes) = cluster(key, deltas).await?;
    let channel = ClusterChannel::new(nodes, ClusterClientConfig::default());
    let client = PagesClient::from(SconeClient::thin_for::<Notes>(channel)?);
    client.visit(tarpc::context::current()).await?;
    let before = primary.stats().copy_bytes;
    let started = Instant::now();
    for _ in 0..updates {
        client.visit(tarpc::context::current()).await?;
    }
    let took = started.elapsed();
    let stats = primary.stats();
    anyhow::ensure!(
        stats.commits == updates + 1,
        "every update committed: {stats:?}"
    );
    if deltas {
        anyhow::ensure!(
            stats.delta_copies == updates,
            "every update a delta: {stats:?}"
        );
    }
    let bytes = (stats.copy_bytes - before) as f64 / updates as f64;
    Ok((bytes, took / u32::try_from(updates)?))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let updates: u64 = match std::env::var("DELTAS_UPDATES") {
        Ok(text) => text.parse().context("DELTAS_UPDATES is a number")?,
        Err(_) => 500,
    };
    let key = SigningKey::generate()?;
    let (full, full_time) = run(&key, false, updates).await?;
    let (delta, delta_time) = run(&key, true, updates).await?;
    println!(
        "state {} B; {updates} updates each; mean time per update: delta {:.0} µs, full {:.0} µs",
        PAGE_BYTES + 8,
        delta_time.as_secs_f64() * 1e6,
        full_time.as_secs_f64() * 1e6,
    );
    println!(
        "bytes_per_update delta={delta:.0} full={full:.0} ratio={:.3}",
        delta / full
    );
    Ok(())
}
