//! A replicated update on a 3-node SCONE cluster (k = 1) against Redis with one replica,
//! where each write is `SET` then `WAIT 1 0`, side by side in one run on this machine.
//!
//! `cargo bench -p scone-cluster --bench vs_redis`
//!
//! Both are two round trips on loopback: client to primary, primary to one copy and back,
//! then the reply. Target: SCONE's p50 at most 1.0x Redis's replicated write, throughput
//! at least 1.0x. Ends with one line, `ratio p50=X throughput=Y` (SCONE cluster divided
//! by Redis: below 1 is better for p50, above 1 for throughput).
//!
//! **SCONE** (`scone`): three cart nodes in this process (`examples::cart`'s handler,
//! unchanged; the process runs with mimalloc, as `cart-server` does), each a
//! [`ClusterNode`] (`StaticMembership` of the three, `TcpTransport` between peers,
//! k = 1, refuse on shortfall: the defaults; the signing key as `issuer_key`, as
//! `cart-server` sets it, so that peers check copies by their issuer tag) plus the cart
//! served by `scone_rpc::server::run` on 127.0.0.1 (client port and peer port per node,
//! real TCP). The nodes' accept loops and peer servers run on a runtime of their own
//! (two threads, `vs-cluster`); each node's client connections on scone-rpc's worker
//! threads (one per core by default, `VS_REDIS_NODE_WORKERS` to change), each of which
//! opens its own link to each peer. Clients are thin
//! `SconeClient`s over a [`ClusterChannel`] (seeds: the three nodes), so the client
//! holds only the routing token and the cluster holds the state. An update is a cart
//! `add` of quantity 1 to an item already in the cart: the state changes on every call,
//! so every reply waits for a new SCONE to be minted (group-signed), copied to one peer
//! (which checks it and keeps it) and acknowledged. Each session's cart is filled
//! first with 8 items with 29-character names, so the state is about 250 bytes of
//! postcard (the exact figure is printed); the reply carries the cart view (the items)
//! back, where Redis answers `+OK` and `:1`.
//!
//! **Redis** (`redis`): Debian's `redis-server`, installed if it is not on `PATH`
//! (`apt-get update`, then `apt-get install -y redis-server`; needs root; if it cannot be
//! had, the Redis modes are left out and no ratio line is printed). The bench starts a
//! primary and a replica on free loopback ports (`--save "" --appendonly no --daemonize
//! no`, in a temporary directory), attaches the replica with `REPLICAOF 127.0.0.1 PORT`,
//! waits until the primary reports `connected_slaves:1` (state online) and the replica
//! `master_link_status:up`, and kills both at the end (and on a panic: kill on drop).
//! An update is `SET session:N <256-byte value>` then `WAIT 1 0` on the same connection,
//! **pipelined**: both commands in one write, then both replies read; `WAIT` must answer
//! `:1` (one replica acknowledged), which is checked on every call. `redis-unpipelined`
//! (on request) waits for `+OK` before sending `WAIT`: one more client round trip.
//!
//! The Redis client is a few lines of RESP over a tokio `TcpStream` written here, not the
//! `redis` crate: the bench needs two fixed commands and four reply types, and this keeps
//! the client as thin as it can be (one prebuilt buffer written per update, no command
//! objects, no connection manager), so what is measured is Redis, and the workspace gains
//! no dependency.
//!
//! **Measured**, the modes taking turns so a noisy machine hits them alike:
//! - Sequential: one session per mode on its own connection, 300 warm-up updates then
//!   `VS_REDIS_CALLS` (default 5,000) one at a time, the modes alternating call by call in
//!   a rotating order. p50 and p99 in µs.
//! - Throughput: 64 sessions per mode, each with one update in flight, for `VS_REDIS_SECS`
//!   (default 2) seconds, repeated for `VS_REDIS_ROUNDS` (default 5) rounds, each round
//!   running every mode once in a rotating order. SCONE's 64 sessions share
//!   `VS_REDIS_CONNECTIONS` (default 4) `ClusterChannel`s, so 4 connections to each node
//!   (tarpc multiplexes calls on a connection); Redis needs a connection per session,
//!   since `WAIT` blocks its connection, so 64. updates/s is the median over rounds; the
//!   throughput ratio is the median of each round's SCONE/Redis ratio. CPU per update:
//!   "server" is the two Redis processes, or this process's threads other than the
//!   client runtime's (the three nodes); "client" is the client runtime's threads.
//!
//! **Scale** (skip with `VS_REDIS_SCALE=0`): what one node holds. A child process (this
//! binary again, so the reading is not the bench's own memory) fills one node's
//! `SessionStore` with `VS_REDIS_SCALE_SESSIONS` (default `100000,1000000`, cumulative
//! checkpoints) sessions of 256 bytes of state, put with `SessionStore::put` as a node
//! does after verifying a copy, minted in groups of `VS_REDIS_SCALE_GROUP` (default 64,
//! the largest group a loaded server signs, so each SCONE carries a 6-digest Merkle path:
//! the worst case) as `scone-router/benches/memory.rs` does; its `VmRSS` is read before
//! and at each checkpoint. Beside it, the Redis primary and replica get as many keys of
//! 256-byte values (pipelined `SET`s, then `WAIT 1 0`) and their `VmRSS` is read. With
//! k = 1 every session is on two nodes, so a cluster of n nodes each holding S sessions
//! keeps n·S/2 sessions.
//!
//! **What it showed** on the 2-core machine it was written on (noisy; Redis's replicated
//! write at p50 55 to 145 µs and 49k to 120k updates/s from day to day, so only ratios
//! from one run mean anything). The SCONE cluster with k = 1 (`scone`): throughput 1.09
//! to 1.23x Redis's (about 23 µs of server CPU per update against Redis's 15, but 7 µs
//! of client CPU against 12), p50 1.24 to 1.34x. The p50 gap is the request path, which
//! `redis-k0` and `scone-k0` (the same writes without the copy) show apart: `scone-k0`
//! at p50 84 to 97 µs, `redis-k0` 52 to 53; the copy adds 53 to 54 µs to SCONE's p50 and
//! 58 to 64 µs to Redis's. Most of the request path's gap is on the client's side: tarpc's
//! client sends and receives through a dispatch task, and on this two-thread client
//! runtime that wakes the other thread about once per call (1.3 futex calls per call,
//! against none for the RESP client); with a one-thread client runtime `scone-k0` is at
//! 53 µs against `redis-k0`'s 69, and `scone` at 1.24x. One copy alone
//! (`copy_round_trip`, checked by its tag) takes 67 to 82 µs at p50 sent back to back;
//! in a probe where the sender idled 50 µs between copies, 30 to 45 µs: most of a hop
//! is waking a thread on the other core, which this VM makes slow, and which Redis's
//! hop pays too. Each server worker has its own link to each peer (`TcpTransport`), so
//! no other thread is woken to read a copy's answer. Without the issuer key
//! (`scone-signed`: every copy's signature checked, 35 µs) it is at 1.75 to 1.83x and
//! 0.55 to 0.60x. With batched replication (`scone-batched`, which replies before the
//! copy is made, so a weaker guarantee than `WAIT`): 0.88x and 1.78x. Before the
//! per-worker links and mimalloc the default was at 1.27 to 1.43x and 0.85 to 0.89x;
//! before peers checked copies by their issuer tag, at 1.7x and 0.47x; before the
//! cluster's own peer protocol (tarpc on the peer link), at 2.1 to 2.8x and 0.34 to
//! 0.45x. One node holding 1,000,000 sessions of 256 B state: 1.3 GB RSS (1,296 B a
//! session, 601 of them the SCONE; 1,240 B with glibc's malloc), against 400 B a key
//! for Redis.
//!
//! Settings (environment): `VS_REDIS_MODES` (default `scone,redis`; also
//! `redis-unpipelined`, `scone-k0` and `redis-k0`, the same cluster with k = 0 and a
//! `SET` without `WAIT`, to see what the copy costs each, `scone-batched`, the cluster
//! with batched replication every 2 ms or 64 changes: replies before the copy, so not
//! the same guarantee as Redis's `WAIT`, and `scone-signed`, the cluster without the
//! issuer key: every copy's signature checked),
//! `VS_REDIS_CALLS`, `VS_REDIS_SECS`, `VS_REDIS_ROUNDS`, `VS_REDIS_CONNECTIONS`,
//! `VS_REDIS_NODE_WORKERS`, `VS_REDIS_SCALE`, `VS_REDIS_SCALE_SESSIONS`,
//! `VS_REDIS_SCALE_GROUP`. Progress goes to stderr, tables and the ratio to stdout. Every
//! await is bounded.
//!
//! The code, a concept a file: [`settings`] (the modes and the environment), [`cluster`]
//! (the SCONE side: three nodes and a thin client's session), [`redis`] (installing,
//! starting and stopping Redis, and its RESP client), [`session`] (a session of either,
//! and the servers' CPU), [`measure`] (the sequential and throughput runs, CPU per update,
//! the table), [`scale`] (what one node holds, in a child process); this file runs them in
//! turn and ends with the ratio line.

/// The nodes run in this process, with the allocator `cart-server` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cluster;
mod measure;
mod redis;
mod scale;
mod session;
mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use scone::SigningKey;

use cluster::Cluster;
use measure::Results;
use redis::{RedisPair, RedisWrite};
use session::Target;
use settings::{Mode, Settings};

/// Every await that could hang gets this long.
const LIMIT: Duration = Duration::from_secs(10);
/// Updates in flight in the throughput runs, one per session.
const IN_FLIGHT: usize = 64;
/// Bytes of each Redis value, and of each session's state in the scale part.
const VALUE_BYTES: usize = 256;
/// The batching of `scone-batched`: copies sent every 2 ms or at 64 changes.
const BATCHING: scone_cluster::Batching = scone_cluster::Batching {
    every: Duration::from_millis(2),
    max_updates: 64,
};
/// Names the client runtime's threads, to tell client CPU from the nodes'.
const CLIENT_THREAD: &str = "vs-client";

/// Awaits `future`, stopping the bench if it takes longer than [`LIMIT`].
async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    bounded_by(LIMIT, what, future).await
}

/// Awaits `future`, stopping the bench if it takes longer than `limit`.
async fn bounded_by<F: std::future::Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Starts Redis if a mode needs it, measures every mode, prints the tables and the ratio
/// line; `clusters` are the SCONE modes' seeds.
async fn run(settings: Settings, clusters: Vec<(Mode, Vec<SocketAddr>)>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wants_redis = settings.modes.iter().any(|m| m.is_redis());
    let redis = match wants_redis {
        true => Some(RedisPair::start(dir.path()).await),
        false => None,
    };
    let mut targets: Vec<(Mode, Target)> = Vec::new();
    for &mode in &settings.modes {
        let target = match mode {
            Mode::Scone | Mode::SconeK0 | Mode::SconeBatched | Mode::SconeSigned => {
                let seeds = clusters
                    .iter()
                    .find(|(m, _)| *m == mode)
                    .map(|(_, seeds)| seeds.clone())
                    .expect("a cluster for the mode");
                Target::Scone { seeds }
            }
            Mode::Redis | Mode::RedisUnpipelined | Mode::RedisK0 => {
                let redis = redis.as_ref().expect("redis is running");
                Target::Redis {
                    port: redis.primary.port,
                    pids: redis.pids(),
                    write: match mode {
                        Mode::RedisUnpipelined => RedisWrite::Unpipelined,
                        Mode::RedisK0 => RedisWrite::Unreplicated,
                        _ => RedisWrite::Pipelined,
                    },
                }
            }
        };
        targets.push((mode, target));
    }
    let names: Vec<&str> = settings.modes.iter().map(|m| m.name()).collect();
    eprintln!(
        "vs_redis: {} sequential updates per mode; {IN_FLIGHT} in flight for {:?} x {} rounds; modes {}",
        settings.calls,
        settings.window,
        settings.rounds,
        names.join(", ")
    );
    if let Some(redis) = &redis {
        eprintln!(
            "redis {}: primary on port {}, replica on port {} (in sync)",
            redis.version, redis.primary.port, redis.replica.port
        );
    }

    let latencies = measure::sequential(&targets, settings.calls).await;
    for ((mode, _), latency) in targets.iter().zip(&latencies) {
        eprintln!(
            "sequential {:<18} p50 {:>7.1} us  p99 {:>7.1} us",
            mode.name(),
            latency.p50_us,
            latency.p99_us
        );
    }
    let rates = measure::rounds(&targets, &settings).await;

    let scaled = match settings.scale {
        true => Some(scale::scale(&settings, redis.as_ref()).await),
        false => None,
    };
    if let Some(redis) = redis {
        redis.stop().await;
    }

    let results = Results {
        latencies,
        rates,
        baseline: targets.iter().position(|(m, _)| *m == Mode::Redis),
    };
    let scone = targets.iter().position(|(m, _)| *m == Mode::Scone);
    results.print_table(&targets, scone);
    if let Some((before, rows)) = &scaled {
        scale::print_table(&settings, *before, rows);
    }

    let (Some(scone), Some(_)) = (scone, results.baseline) else {
        println!("(no ratio line: it needs both the scone and redis modes)");
        return;
    };
    let (p50, tput) = (
        results.p50_ratio(scone).unwrap_or(f64::NAN),
        results.throughput_ratio(scone).unwrap_or(f64::NAN),
    );
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!(
        "target: p50 <= 1.00x redis ({}), throughput >= 1.00x redis ({})",
        verdict(p50 <= 1.0),
        verdict(tput >= 1.0)
    );
    println!("ratio p50={p50:.2} throughput={tput:.2}");
}

fn main() {
    if let Ok(spec) = std::env::var(scale::SCALE_CHILD) {
        return scale::scale_child(&spec);
    }
    let mut settings = Settings::from_env();
    if settings.modes.iter().any(|m| m.is_redis()) && !redis::ensure_redis() {
        eprintln!(
            "warning: redis-server could not be found or installed; leaving out the redis modes"
        );
        settings.modes.retain(|m| !m.is_redis());
        assert!(!settings.modes.is_empty(), "no mode left to run");
    }
    let key = SigningKey::generate().expect("a signing key");
    let clusters: Vec<(Mode, Cluster)> = settings
        .modes
        .iter()
        .filter_map(|&mode| match mode {
            Mode::Scone => Some((
                mode,
                Cluster::start(&key, 1, None, true, settings.node_workers),
            )),
            Mode::SconeK0 => Some((
                mode,
                Cluster::start(&key, 0, None, true, settings.node_workers),
            )),
            Mode::SconeSigned => Some((
                mode,
                Cluster::start(&key, 1, None, false, settings.node_workers),
            )),
            Mode::SconeBatched => {
                let batching = Some(BATCHING);
                Some((
                    mode,
                    Cluster::start(&key, 1, batching, true, settings.node_workers),
                ))
            }
            _ => None,
        })
        .collect();
    let seeds = clusters
        .iter()
        .map(|(mode, cluster)| (*mode, cluster.seeds.clone()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .expect("client runtime");
    // On a worker thread, so that every client call runs on the client runtime's threads.
    runtime
        .block_on(async { tokio::spawn(run(settings, seeds)).await })
        .expect("the bench ran to the end");
    drop(runtime);
    for (mode, cluster) in clusters {
        let (copies, messages) = cluster.copies_and_messages();
        if messages > 0 {
            eprintln!(
                "{}: {copies} copies in {messages} messages ({:.2} a message)",
                mode.name(),
                copies as f64 / messages as f64
            );
        }
        cluster.stop();
    }
}
