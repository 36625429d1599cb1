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
//! unchanged), each a [`ClusterNode`] (`StaticMembership` of the three, `TcpTransport`
//! between peers, k = 1, refuse on shortfall: the defaults) plus the cart served by
//! `scone_rpc::server::run` on 127.0.0.1 (client port and peer port per node, real TCP).
//! The nodes' accept loops and peer servers run on a runtime of their own (two threads,
//! `vs-cluster`); each node's client connections on scone-rpc's worker threads (one per
//! core by default, `VS_REDIS_NODE_WORKERS` to change). Clients are thin
//! `SconeClient`s over a [`ClusterChannel`] (seeds: the three nodes), so the client
//! holds only the routing token and the cluster holds the state. An update is a cart
//! `add` of quantity 1 to an item already in the cart: the state changes on every call,
//! so every reply waits for a new SCONE to be minted (group-signed), copied to one peer
//! (which verifies it and keeps it) and acknowledged. Each session's cart is filled
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
//! **What it showed** on the 2-core machine it was written on (shared with CI runs, so
//! noisy): Redis's replicated write at p50 35 to 80 µs and 75k to 120k updates/s; the
//! SCONE cluster with k = 1 at p50 90 to 200 µs (1.2x to 3.3x Redis in the same run) and
//! 13k to 23k updates/s (0.16x to 0.21x), about 80 µs of server CPU per update against
//! Redis's 8. The same cluster with k = 0 (`scone-k0`) was at 0.9x Redis's p50 and 1.1x
//! to 1.2x its throughput: the copy is what costs. perf (throughput, k = 1): about a third
//! of the nodes' CPU is the peer's ed25519 `verify_strict` of each copy it receives
//! (`Replica::verified` checks every SCONE's signature in full, without a `VerifiedRoots`
//! cache, so the primary's group signing saves the peer nothing), most of the rest the
//! peer link's per-copy round trip (a tarpc request and response per copy, a `writev`
//! each, wakeups across runtimes).
//!
//! Settings (environment): `VS_REDIS_MODES` (default `scone,redis`; also
//! `redis-unpipelined`, and `scone-k0`, the same cluster with k = 0, to see what the copy
//! costs), `VS_REDIS_CALLS`, `VS_REDIS_SECS`, `VS_REDIS_ROUNDS`, `VS_REDIS_CONNECTIONS`,
//! `VS_REDIS_NODE_WORKERS`, `VS_REDIS_SCALE`, `VS_REDIS_SCALE_SESSIONS`,
//! `VS_REDIS_SCALE_GROUP`. Progress goes to stderr, tables and the ratio to stdout. Every
//! await is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::cart::{
    self, Cart as _, CartClient, CartRequest, CartResponse, CartServer, CartState,
};
use scone::{Draft, EndpointId, KeyRing, Minter, ServiceId, SigningKey};
use scone_cluster::{
    ClusterChannel, ClusterClientConfig, ClusterConfig, ClusterNode, Member, NodeConfig, Replicas,
    SessionId, SessionStore, StaticMembership, Stored,
};
use scone_rpc::server::ServerConfig;
use scone_rpc::{SconeClient, SconeLayer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Every await that could hang gets this long.
const LIMIT: Duration = Duration::from_secs(10);
/// Updates in flight in the throughput runs, one per session.
const IN_FLIGHT: usize = 64;
/// Sequential updates per mode before the measured ones.
const WARMUP_CALLS: usize = 300;
/// Bytes of each Redis value, and of each session's state in the scale part.
const VALUE_BYTES: usize = 256;
/// Items put in each cart before measuring, and the length of their names: a cart of
/// about 256 bytes.
const CART_ITEMS: usize = 8;
const ITEM_NAME_CHARS: usize = 29;
/// Set in the child process that fills a `SessionStore` (the scale part).
const SCALE_CHILD: &str = "VS_REDIS_SCALE_CHILD";
/// Names the client runtime's threads, to tell client CPU from the nodes'.
const CLIENT_THREAD: &str = "vs-client";

type Cart = CartClient<SconeClient<CartRequest, CartResponse, ClusterChannel>>;

// ---------------------------------------------------------------- settings

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Scone,
    Redis,
    RedisUnpipelined,
    SconeK0,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Scone,
        Mode::Redis,
        Mode::RedisUnpipelined,
        Mode::SconeK0,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Scone => "scone",
            Mode::Redis => "redis",
            Mode::RedisUnpipelined => "redis-unpipelined",
            Mode::SconeK0 => "scone-k0",
        }
    }

    fn is_redis(self) -> bool {
        matches!(self, Mode::Redis | Mode::RedisUnpipelined)
    }

    fn by_default(self) -> bool {
        matches!(self, Mode::Scone | Mode::Redis)
    }
}

struct Settings {
    modes: Vec<Mode>,
    calls: usize,
    window: Duration,
    rounds: usize,
    connections: usize,
    node_workers: usize,
    scale: bool,
    scale_sessions: Vec<u64>,
    scale_group: usize,
}

/// `name`'s value, or `default` when unset; a bad value stops the bench.
fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let only = std::env::var("VS_REDIS_MODES").unwrap_or_default();
        let modes: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|mode| match only.trim().is_empty() {
                true => mode.by_default(),
                false => only.split(',').any(|m| m.trim() == mode.name()),
            })
            .collect();
        assert!(
            !modes.is_empty(),
            "VS_REDIS_MODES={only:?} names no mode (scone, redis, redis-unpipelined, scone-k0)"
        );
        let mut scale_sessions: Vec<u64> = std::env::var("VS_REDIS_SCALE_SESSIONS")
            .unwrap_or_else(|_| "100000,1000000".into())
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("VS_REDIS_SCALE_SESSIONS: {n:?} is not a count"))
            })
            .filter(|&n| n > 0)
            .collect();
        scale_sessions.sort_unstable();
        scale_sessions.dedup();
        Self {
            modes,
            calls: env_or("VS_REDIS_CALLS", 5_000usize).max(1),
            window: Duration::from_secs_f64(env_or("VS_REDIS_SECS", 2.0f64).max(0.1)),
            rounds: env_or("VS_REDIS_ROUNDS", 5usize).max(1),
            connections: env_or("VS_REDIS_CONNECTIONS", 4usize).clamp(1, IN_FLIGHT),
            node_workers: env_or("VS_REDIS_NODE_WORKERS", 0usize),
            scale: env_or("VS_REDIS_SCALE", 1u8) != 0 && !scale_sessions.is_empty(),
            scale_sessions,
            scale_group: env_or("VS_REDIS_SCALE_GROUP", 64usize).clamp(1, 1 << 16),
        }
    }
}

// ---------------------------------------------------------------- small helpers

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

/// User + system CPU seconds in a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// User + system CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn thread_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| {
            let name = stat.split_once('(').map_or("", |(_, rest)| rest);
            name.starts_with(prefix)
        })
        .map(|stat| stat_cpu_seconds(&stat))
        .sum()
}

/// Resident set size of process `pid` in bytes (`VmRSS`), 0 if unreadable.
fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

/// A port that was free a moment ago (Redis cannot report one it picked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `command` to the end, for at most `limit`; whether it succeeded.
fn run_bounded(command: &mut std::process::Command, limit: Duration) -> bool {
    let Ok(mut child) = command.spawn() else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

// ---------------------------------------------------------------- the SCONE cluster

/// Three cart nodes in this process, on a runtime of their own.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    /// Client addresses of the nodes.
    seeds: Vec<SocketAddr>,
    nodes: Vec<ClusterNode<StaticMembership>>,
    stops: Vec<oneshot::Sender<()>>,
    serving: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Cluster {
    fn start(key: &SigningKey, replicas: usize, workers: usize) -> Self {
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
        let keys = KeyRing::for_service(service, [key.public_key()]).expect("key ring");
        let config = NodeConfig {
            cluster: ClusterConfig {
                replicas: Replicas::Count(replicas),
                ..ClusterConfig::default()
            },
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
            );
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

    /// Stops the client listeners and the peer servers; call it outside any runtime.
    fn stop(self) {
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
fn cart_state_bytes(calls: u64) -> usize {
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
struct SconeSession {
    cart: Cart,
    hot: String,
    calls: u64,
}

impl SconeSession {
    /// A new session on `channel`, its cart filled with [`CART_ITEMS`] items.
    async fn open(channel: ClusterChannel) -> Self {
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
    async fn update(&mut self) -> bool {
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

// ---------------------------------------------------------------- Redis

/// A reply in RESP (arrays are not needed here).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

/// Appends a RESP command of `args` to `out`.
fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection to Redis, speaking RESP.
struct RedisConnection {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl RedisConnection {
    async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(16 * 1024, stream),
            line: Vec::with_capacity(64),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        self.line.clear();
        if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = self
            .line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| bad("a reply line without CRLF".into()))?;
        let (&kind, rest) = line
            .split_first()
            .ok_or_else(|| bad("an empty reply".into()))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Status(text)),
            b'-' => Ok(Reply::Error(text)),
            b':' => text
                .parse()
                .map(Reply::Integer)
                .map_err(|_| bad(format!("integer reply {text:?}"))),
            b'$' => {
                let length: i64 = text
                    .parse()
                    .map_err(|_| bad(format!("bulk length {text:?}")))?;
                let Ok(length) = usize::try_from(length) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut body = vec![0; length + 2];
                self.stream.read_exact(&mut body).await?;
                body.truncate(length);
                Ok(Reply::Bulk(Some(body)))
            }
            other => Err(bad(format!("unexpected reply type {:?}", other as char))),
        }
    }

    /// Sends one command and reads its reply.
    async fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut bytes = Vec::new();
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        encode_command(&args, &mut bytes);
        self.send(&bytes).await?;
        self.read_reply().await
    }

    /// The text of `INFO section`.
    async fn info(&mut self, section: &str) -> String {
        match bounded("INFO", self.command(&["INFO", section])).await {
            Ok(Reply::Bulk(Some(body))) => String::from_utf8_lossy(&body).into_owned(),
            other => panic!("INFO {section}: {other:?}"),
        }
    }
}

/// A session on Redis: its key, and a connection of its own (`WAIT` blocks it).
struct RedisSession {
    connection: RedisConnection,
    /// `SET key value` then `WAIT 1 0`, encoded.
    commands: Vec<u8>,
    /// Where the `WAIT` starts in `commands`.
    wait_at: usize,
    /// Where the value starts in `commands`.
    value_at: usize,
    pipelined: bool,
    calls: u64,
}

impl RedisSession {
    async fn open(port: u16, session: u64, pipelined: bool) -> Self {
        let connection = bounded("connecting to redis", RedisConnection::connect(port))
            .await
            .expect("connect to redis");
        let key = format!("session:{session}");
        let value = vec![b'v'; VALUE_BYTES];
        let mut commands = Vec::new();
        encode_command(&[b"SET", key.as_bytes(), &value], &mut commands);
        let value_at = commands.len() - 2 - VALUE_BYTES;
        let wait_at = commands.len();
        encode_command(&[b"WAIT", b"1", b"0"], &mut commands);
        Self {
            connection,
            commands,
            wait_at,
            value_at,
            pipelined,
            calls: 0,
        }
    }

    /// `SET` of a changed value, then `WAIT 1 0`; whether Redis said `OK` and that one
    /// replica has it.
    async fn update(&mut self) -> bool {
        self.calls += 1;
        // The value changes on every write, as a session's state would.
        let stamp = format!("{:016x}", self.calls);
        self.commands[self.value_at..self.value_at + 16].copy_from_slice(stamp.as_bytes());
        let exchange = async {
            let (set, wait) = match self.pipelined {
                true => {
                    self.connection.send(&self.commands).await?;
                    (
                        self.connection.read_reply().await?,
                        self.connection.read_reply().await?,
                    )
                }
                false => {
                    self.connection.send(&self.commands[..self.wait_at]).await?;
                    let set = self.connection.read_reply().await?;
                    self.connection.send(&self.commands[self.wait_at..]).await?;
                    (set, self.connection.read_reply().await?)
                }
            };
            std::io::Result::Ok((set, wait))
        };
        let (set, wait) = bounded("a SET and WAIT", exchange)
            .await
            .expect("redis answered");
        set == Reply::Status("OK".into()) && wait == Reply::Integer(1)
    }
}

/// A `redis-server` child process: killed when dropped, so also on a panic.
struct RedisProcess {
    name: &'static str,
    child: Child,
    port: u16,
}

impl RedisProcess {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn start(name: &'static str, dir: &Path) -> Self {
        let port = free_port();
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("a directory for redis");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("a redis log");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // Only the first full sync: no 5 s wait for more replicas to join it.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&data)
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join(format!("{name}.log")));
                panic!("redis {name} exited ({status}) before listening:\n{log:?}");
            }
            if let Ok(Ok(mut connection)) =
                tokio::time::timeout(Duration::from_secs(1), RedisConnection::connect(port)).await
            {
                let pong = bounded("PING", connection.command(&["PING"])).await;
                if matches!(pong, Ok(Reply::Status(ref s)) if s == "PONG") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis {name} did not listen on port {port} within {LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { name, child, port }
    }

    /// Kills it and waits until it is gone.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        if bounded(self.name, self.child.wait()).await.is_err() {
            eprintln!("warning: could not reap redis {}", self.name);
        }
    }
}

/// A Redis primary with one replica in sync.
struct RedisPair {
    primary: RedisProcess,
    replica: RedisProcess,
    version: String,
}

impl RedisPair {
    async fn start(dir: &Path) -> Self {
        let primary = RedisProcess::start("primary", dir).await;
        let replica = RedisProcess::start("replica", dir).await;
        let mut to_replica = RedisConnection::connect(replica.port)
            .await
            .expect("connect to the replica");
        let port = primary.port.to_string();
        let attached = bounded(
            "REPLICAOF",
            to_replica.command(&["REPLICAOF", "127.0.0.1", &port]),
        )
        .await
        .expect("REPLICAOF answered");
        assert_eq!(attached, Reply::Status("OK".into()), "REPLICAOF");
        let mut to_primary = RedisConnection::connect(primary.port)
            .await
            .expect("connect to the primary");
        let deadline = Instant::now() + LIMIT;
        loop {
            let on_primary = to_primary.info("replication").await;
            let on_replica = to_replica.info("replication").await;
            let online =
                on_primary.contains("connected_slaves:1") && on_primary.contains("state=online");
            if online && on_replica.contains("master_link_status:up") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the redis replica did not get in sync within {LIMIT:?}:\n{on_primary}\n{on_replica}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A write that the replica acknowledges: the setup works end to end.
        let mut probe = RedisSession::open(primary.port, u64::MAX, true).await;
        assert!(probe.update().await, "a SET and WAIT 1 0 on the new pair");
        let server = to_primary.info("server").await;
        let version = server
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        Self {
            primary,
            replica,
            version,
        }
    }

    fn pids(&self) -> Vec<u32> {
        vec![self.primary.pid(), self.replica.pid()]
    }

    async fn stop(self) {
        self.replica.stop().await;
        self.primary.stop().await;
    }
}

/// Whether `redis-server --version` runs.
fn redis_runs() -> bool {
    run_bounded(
        std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        LIMIT,
    )
}

/// Makes sure `redis-server` is on `PATH`, installing Debian's package if it is not.
fn ensure_redis() -> bool {
    if redis_runs() {
        return true;
    }
    eprintln!(
        "redis-server is not installed: apt-get update, then apt-get install -y redis-server"
    );
    let apt = |args: &[&str]| {
        run_bounded(
            std::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            Duration::from_secs(600),
        )
    };
    let installed = apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "redis-server"]);
    installed && redis_runs()
}

// ---------------------------------------------------------------- sessions of any mode

/// Where a mode's sessions live.
enum Target {
    Scone {
        seeds: Vec<SocketAddr>,
    },
    Redis {
        port: u16,
        pids: Vec<u32>,
        pipelined: bool,
    },
}

enum Session {
    Scone(Box<SconeSession>),
    Redis(Box<RedisSession>),
}

impl Session {
    async fn update(&mut self) -> bool {
        match self {
            Session::Scone(session) => session.update().await,
            Session::Redis(session) => session.update().await,
        }
    }
}

/// Redis keys are never reused: every session starts fresh.
static NEXT_KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `count` new sessions of `target`; SCONE's over `connections` channels.
async fn open_sessions(target: &Target, count: usize, connections: usize) -> Vec<Session> {
    match target {
        Target::Scone { seeds } => {
            let config = ClusterClientConfig {
                attempt_timeout: Duration::from_secs(2),
            };
            let channels: Vec<ClusterChannel> = (0..connections.min(count))
                .map(|_| ClusterChannel::new(seeds.clone(), config.clone()))
                .collect();
            let opening =
                (0..count).map(|i| SconeSession::open(channels[i % channels.len()].clone()));
            bounded("opening SCONE sessions", futures::future::join_all(opening))
                .await
                .into_iter()
                .map(|session| Session::Scone(Box::new(session)))
                .collect()
        }
        Target::Redis {
            port, pipelined, ..
        } => {
            let mut sessions = Vec::with_capacity(count);
            for _ in 0..count {
                let key = NEXT_KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let session = RedisSession::open(*port, key, *pipelined).await;
                sessions.push(Session::Redis(Box::new(session)));
            }
            sessions
        }
    }
}

impl Target {
    /// CPU seconds of the servers so far (the Redis processes, or the nodes' threads).
    fn server_cpu_seconds(&self) -> f64 {
        match self {
            Target::Redis { pids, .. } => pids.iter().map(|&pid| cpu_seconds(pid)).sum(),
            Target::Scone { .. } => {
                cpu_seconds(std::process::id()) - thread_cpu_seconds(CLIENT_THREAD)
            }
        }
    }
}

// ---------------------------------------------------------------- measurements

struct Latency {
    p50_us: f64,
    p99_us: f64,
    errors: usize,
}

/// Sequential updates, one session per mode, the modes taking turns call by call in a
/// rotating order.
async fn sequential(targets: &[(Mode, Target)], calls: usize) -> Vec<Latency> {
    let mut sessions = Vec::new();
    for (_, target) in targets {
        sessions.push(open_sessions(target, 1, 1).await.remove(0));
    }
    let mut samples = vec![Vec::with_capacity(calls); targets.len()];
    let mut errors = vec![0; targets.len()];
    for i in 0..WARMUP_CALLS + calls {
        for turn in 0..targets.len() {
            let index = (i + turn) % targets.len();
            let start = Instant::now();
            let ok = sessions[index].update().await;
            let elapsed = start.elapsed();
            errors[index] += usize::from(!ok);
            if i >= WARMUP_CALLS {
                samples[index].push(elapsed);
            }
        }
    }
    samples
        .into_iter()
        .zip(errors)
        .map(|(mut samples, errors)| {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            Latency {
                p50_us: at(0.50).as_secs_f64() * 1e6,
                p99_us: at(0.99).as_secs_f64() * 1e6,
                errors,
            }
        })
        .collect()
}

struct Rate {
    calls_per_second: f64,
    server_us: f64,
    client_us: f64,
    errors: usize,
}

/// Updates per second with every session of `sessions` keeping one in flight for
/// `window`; the sessions are handed back for the next round.
async fn throughput(target: &Target, sessions: &mut Vec<Session>, window: Duration) -> Rate {
    let (server_before, client_before) = (
        target.server_cpu_seconds(),
        thread_cpu_seconds(CLIENT_THREAD),
    );
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .drain(..)
        .map(|mut session| {
            tokio::spawn(async move {
                let (mut calls, mut errors) = (0usize, 0usize);
                while start.elapsed() < window {
                    errors += usize::from(!session.update().await);
                    calls += 1;
                }
                (session, calls, errors)
            })
        })
        .collect();
    let (mut total, mut errors) = (0, 0);
    for task in tasks {
        let (session, calls, wrong) = bounded_by(window + LIMIT, "a throughput session", task)
            .await
            .expect("a throughput session panicked");
        sessions.push(session);
        total += calls;
        errors += wrong;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_call = |seconds: f64| seconds * 1e6 / total.max(1) as f64;
    Rate {
        calls_per_second: total as f64 / elapsed,
        server_us: per_call(target.server_cpu_seconds() - server_before),
        client_us: per_call(thread_cpu_seconds(CLIENT_THREAD) - client_before),
        errors,
    }
}

// ---------------------------------------------------------------- scale

/// The child process of the scale part: fills one `SessionStore` to each checkpoint in
/// `VS_REDIS_SCALE_CHILD` and prints `checkpoint SESSIONS RSS_BYTES ENCODED_BYTES` lines.
fn scale_child(spec: &str) {
    let checkpoints: Vec<u64> = spec
        .split(',')
        .map(|n| n.trim().parse().expect("a checkpoint"))
        .collect();
    let group: usize = env_or("VS_REDIS_SCALE_GROUP", 64usize).clamp(1, 1 << 16);
    let largest = checkpoints.iter().copied().max().unwrap_or(0);
    let bound = NodeConfig::default()
        .max_sessions
        .max(usize::try_from(largest).expect("sessions fit in memory"));
    let store = SessionStore::new(bound);
    let service = ServiceId::new("cart").expect("service ID");
    let minter = Minter::new(SigningKey::generate().expect("a signing key"));
    let mut drafts: Vec<Draft> = Vec::with_capacity(group);
    println!("before {}", rss_bytes("self"));
    let started = Instant::now();
    let (mut next, mut encoded) = (0u64, 0u64);
    for checkpoint in checkpoints {
        while next < checkpoint {
            let size = (group as u64).min(checkpoint - next);
            drafts.clear();
            for n in next..next + size {
                let mut endpoint = [0xe; 16];
                endpoint[..8].copy_from_slice(&n.to_le_bytes());
                // A state that differs from session to session (its content does not matter).
                let state: Vec<u8> = (0..VALUE_BYTES).map(|i| (n as usize + i) as u8).collect();
                drafts.push(
                    Draft::new(service.clone(), EndpointId::from_bytes(endpoint)).with_state(state),
                );
            }
            for scone in minter.mint_batch(&drafts).expect("mint a group") {
                encoded += scone.encoded().len() as u64;
                // By value: the store keeps a compacted copy, the minted one goes.
                assert_eq!(store.put(scone), Stored::Kept, "session {next} kept");
            }
            next += size;
        }
        assert_eq!(
            store.len() as u64,
            checkpoint,
            "the store holds every session"
        );
        println!(
            "checkpoint {checkpoint} {} {encoded} {:.1}",
            rss_bytes("self"),
            started.elapsed().as_secs_f64()
        );
    }
}

/// One row of the scale table.
struct ScaleRow {
    sessions: u64,
    scone_rss: u64,
    scone_grown: u64,
    encoded_each: f64,
    redis: Option<(u64, u64, u64, u64)>,
}

/// Runs the scale child and, beside it, fills Redis; the rows of the scale table.
async fn scale(settings: &Settings, redis: Option<&RedisPair>) -> (u64, Vec<ScaleRow>) {
    let spec: Vec<String> = settings
        .scale_sessions
        .iter()
        .map(|n| n.to_string())
        .collect();
    eprintln!(
        "scale: filling one node's SessionStore to {} sessions (child process)",
        spec.join(", ")
    );
    let child = Command::new(std::env::current_exe().expect("this binary"))
        .env(SCALE_CHILD, spec.join(","))
        .env("VS_REDIS_SCALE_GROUP", settings.scale_group.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    let output = bounded_by(Duration::from_secs(900), "the scale child", child)
        .await
        .expect("run the scale child");
    assert!(
        output.status.success(),
        "the scale child failed: {}",
        output.status
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut before = 0;
    let mut scone_rows = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["before", rss] => before = rss.parse().unwrap_or(0),
            ["checkpoint", sessions, rss, encoded, secs] => {
                let sessions: u64 = sessions.parse().unwrap_or(1);
                let rss: u64 = rss.parse().unwrap_or(0);
                let encoded: f64 = encoded.parse().unwrap_or(0.0);
                eprintln!("scale: {sessions} sessions in the store after {secs} s");
                scone_rows.push(ScaleRow {
                    sessions,
                    scone_rss: rss,
                    scone_grown: rss.saturating_sub(before),
                    encoded_each: encoded / sessions as f64,
                    redis: None,
                });
            }
            _ => eprintln!("scale child: {line}"),
        }
    }
    if let Some(redis) = redis {
        let pids = (
            redis.primary.pid().to_string(),
            redis.replica.pid().to_string(),
        );
        let (primary_before, replica_before) = (rss_bytes(&pids.0), rss_bytes(&pids.1));
        let mut connection = RedisConnection::connect(redis.primary.port)
            .await
            .expect("connect to the primary");
        let mut written = 0u64;
        for row in &mut scone_rows {
            const BATCH: u64 = 1_000;
            let mut batch = Vec::new();
            while written < row.sessions {
                let size = BATCH.min(row.sessions - written);
                batch.clear();
                for n in written..written + size {
                    let key = format!("scale:{n}");
                    let value: Vec<u8> = (0..VALUE_BYTES)
                        .map(|i| b'a' + ((n as usize + i) % 26) as u8)
                        .collect();
                    encode_command(&[b"SET", key.as_bytes(), &value], &mut batch);
                }
                bounded("a batch of SETs", connection.send(&batch))
                    .await
                    .expect("send SETs");
                for _ in 0..size {
                    let reply = bounded("a SET", connection.read_reply()).await;
                    assert_eq!(reply.expect("a reply"), Reply::Status("OK".into()));
                }
                written += size;
            }
            let waited = bounded("WAIT 1 0", connection.command(&["WAIT", "1", "0"])).await;
            assert_eq!(waited.expect("WAIT answered"), Reply::Integer(1));
            let (primary, replica) = (rss_bytes(&pids.0), rss_bytes(&pids.1));
            row.redis = Some((
                primary,
                primary.saturating_sub(primary_before),
                replica,
                replica.saturating_sub(replica_before),
            ));
        }
    }
    (before, scone_rows)
}

// ---------------------------------------------------------------- the run

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

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
            Mode::Scone | Mode::SconeK0 => {
                let seeds = clusters
                    .iter()
                    .find(|(m, _)| *m == mode)
                    .map(|(_, seeds)| seeds.clone())
                    .expect("a cluster for the mode");
                Target::Scone { seeds }
            }
            Mode::Redis | Mode::RedisUnpipelined => {
                let redis = redis.as_ref().expect("redis is running");
                Target::Redis {
                    port: redis.primary.port,
                    pids: redis.pids(),
                    pipelined: mode == Mode::Redis,
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

    let latencies = sequential(&targets, settings.calls).await;
    for ((mode, _), latency) in targets.iter().zip(&latencies) {
        eprintln!(
            "sequential {:<18} p50 {:>7.1} us  p99 {:>7.1} us",
            mode.name(),
            latency.p50_us,
            latency.p99_us
        );
    }

    let mut sessions = Vec::new();
    for (_, target) in &targets {
        sessions.push(open_sessions(target, IN_FLIGHT, settings.connections).await);
    }
    let mut rates: Vec<Vec<Rate>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for turn in 0..targets.len() {
            let index = (round + turn) % targets.len();
            let rate = throughput(&targets[index].1, &mut sessions[index], settings.window).await;
            eprintln!(
                "round {round} {:<18} {:>8.0} updates/s  CPU per update: server {:>5.1} us, client {:>5.1} us",
                targets[index].0.name(),
                rate.calls_per_second,
                rate.server_us,
                rate.client_us
            );
            rates[index].push(rate);
        }
    }
    drop(sessions);

    let scaled = match settings.scale {
        true => Some(scale(&settings, redis.as_ref()).await),
        false => None,
    };
    if let Some(redis) = redis {
        redis.stop().await;
    }

    // ---- the tables
    let baseline = targets.iter().position(|(m, _)| *m == Mode::Redis);
    let scone = targets.iter().position(|(m, _)| *m == Mode::Scone);
    let throughput_ratio = |index: usize| {
        baseline.map(|b| {
            median(
                rates[index]
                    .iter()
                    .zip(&rates[b])
                    .map(|(x, base)| x.calls_per_second / base.calls_per_second)
                    .collect(),
            )
        })
    };
    let p50_ratio = |index: usize| baseline.map(|b| latencies[index].p50_us / latencies[b].p50_us);
    let or_dash = |ratio: Option<f64>| ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
    println!();
    println!(
        "SCONE: 3 cart nodes, k = 1, cart state {} B (postcard) at the start, {} B after 10,000 updates; Redis: values of {VALUE_BYTES} B",
        cart_state_bytes(0),
        cart_state_bytes(10_000)
    );
    println!(
        "| mode | p50 us | p99 us | updates/s ({IN_FLIGHT} in flight) | server CPU us/update | client CPU us/update | p50 vs redis | updates/s vs redis | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (index, (mode, _)) in targets.iter().enumerate() {
        let rate = |f: fn(&Rate) -> f64| median(rates[index].iter().map(f).collect());
        let errors = latencies[index].errors + rates[index].iter().map(|r| r.errors).sum::<usize>();
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {} | {} | {errors} |",
            mode.name(),
            latencies[index].p50_us,
            latencies[index].p99_us,
            rate(|r| r.calls_per_second),
            rate(|r| r.server_us),
            rate(|r| r.client_us),
            or_dash(p50_ratio(index)),
            or_dash(throughput_ratio(index)),
        );
    }
    if let (Some(scone), Some(base)) = (scone, baseline) {
        let by_round: Vec<String> = rates[scone]
            .iter()
            .zip(&rates[base])
            .map(|(x, b)| format!("{:.3}", x.calls_per_second / b.calls_per_second))
            .collect();
        println!("scone/redis throughput by round: {}", by_round.join(" "));
    }
    let errors: usize = latencies.iter().map(|l| l.errors).sum::<usize>()
        + rates.iter().flatten().map(|r| r.errors).sum::<usize>();
    if errors > 0 {
        println!(
            "warning: {errors} updates came back wrong (a cart not as expected, or WAIT not 1)"
        );
    }

    if let Some((before, rows)) = &scaled {
        println!();
        println!(
            "Scale: one node's SessionStore (a child process, RSS {:.1} MB before), sessions of {VALUE_BYTES} B state minted in groups of {}; Redis primary and replica, keys of {VALUE_BYTES} B values",
            mb(*before),
            settings.scale_group
        );
        println!(
            "| sessions | SCONE node RSS MB | grew MB | B/session | encoded SCONE B | Redis primary RSS MB | grew MB | B/key | Redis replica RSS MB | grew MB |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for row in rows {
            let redis = match row.redis {
                Some((primary, primary_grown, replica, replica_grown)) => format!(
                    "{:.1} | {:.1} | {:.0} | {:.1} | {:.1}",
                    mb(primary),
                    mb(primary_grown),
                    primary_grown as f64 / row.sessions as f64,
                    mb(replica),
                    mb(replica_grown)
                ),
                None => "- | - | - | - | -".into(),
            };
            println!(
                "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {redis} |",
                row.sessions,
                mb(row.scone_rss),
                mb(row.scone_grown),
                row.scone_grown as f64 / row.sessions as f64,
                row.encoded_each,
            );
        }
        println!(
            "sessions held per node: at most NodeConfig::default().max_sessions = {} (past it new sessions are refused, never evicted); with k = 1 each session is on 2 nodes, so 3 nodes at that bound hold {} sessions",
            NodeConfig::default().max_sessions,
            NodeConfig::default().max_sessions * 3 / 2
        );
        println!(
            "in memory besides the encoded bytes: each session is a `SessionId` ({} B) and a `Scone` ({} B) in a HashMap bucket, plus the compacted bytes' own allocation; Redis keeps a dictEntry, a key sds and a value sds per key",
            std::mem::size_of::<SessionId>(),
            std::mem::size_of::<scone::Scone>()
        );
    }

    let (Some(scone), Some(_)) = (scone, baseline) else {
        println!("(no ratio line: it needs both the scone and redis modes)");
        return;
    };
    let (p50, tput) = (
        p50_ratio(scone).unwrap_or(f64::NAN),
        throughput_ratio(scone).unwrap_or(f64::NAN),
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
    if let Ok(spec) = std::env::var(SCALE_CHILD) {
        return scale_child(&spec);
    }
    let mut settings = Settings::from_env();
    if settings.modes.iter().any(|m| m.is_redis()) && !ensure_redis() {
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
            Mode::Scone => Some((mode, Cluster::start(&key, 1, settings.node_workers))),
            Mode::SconeK0 => Some((mode, Cluster::start(&key, 0, settings.node_workers))),
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
    for (_, cluster) in clusters {
        cluster.stop();
    }
}
