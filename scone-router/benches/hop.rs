//! What a relay hop costs: a thin client through `scone-relay`, against the same cart
//! calls made by a caching client through HAProxy in TCP mode (a plain proxy doing the
//! same hop), a direct call for reference, and a relay of a two-relay mesh (r = 1), side
//! by side in one run.
//!
//! `cargo bench -p scone-router --bench hop`
//!
//! A relay hop costs a network round trip whatever it does, so the relay is measured
//! against a proxy that does nothing but forward bytes. The comparison that matters is
//! `relay` against `haproxy`: a thin client through the relay makes the server do the same
//! work (verify the SCONE, run the call, mint a new one) as a caching client through the
//! plain proxy; the relay in addition attaches the client's SCONE, and verifies and keeps
//! the reply's.
//!
//! Modes (`HOP_MODES=direct,haproxy,relay,relay-mesh` picks some; all by default):
//! - `direct`: a caching `SconeClient` straight to the cart server.
//! - `haproxy`: the same caching client through HAProxy, `mode tcp`, on 127.0.0.1. The
//!   bench writes its config to a temporary directory, starts `haproxy -f CFG -db` as a
//!   child process (its default threads: one per core) and kills it at the end. If
//!   `haproxy` is not on `PATH`, the bench runs `apt-get update` and
//!   `apt-get install -y haproxy` (Debian's package; needs root); if that fails too, the
//!   mode is left out and no ratio line is printed.
//! - `relay`: a thin client through a `scone-relay` child process
//!   (`--listen 127.0.0.1:0 --route cart=SERVER --trust cart=PUBKEY`, `RUST_LOG=warn`):
//!   alone, so the reply goes back at once and its SCONE is verified and kept in the
//!   background.
//! - `relay-mesh`: a thin client through relay A of a two-relay mesh, r = 1, durable (the
//!   default): each reply waits for A to verify and store its SCONE and for B to
//!   acknowledge its copy. Peer lists are fixed at start and a relay needs its peers'
//!   addresses then, so B starts first with no peers (`--mesh-listen 127.0.0.1:0`, its
//!   address read from its `mesh listening on ADDR` line), then A with `--peer B`. B
//!   never copies back to A, which does not matter here: only A is called.
//!
//! Upstream: one cart server (`examples::cart::serve`: scone-rpc's thread-per-core
//! workers, group signing) in this process, its accept loop on a runtime of its own, the
//! same server for every mode. Clients run here too, on a two-thread runtime (the machine
//! this was written on has two cores, shared by clients, server and proxy).
//!
//! The call: a cart `add` of the same item, quantity 1, so the state changes and the reply
//! carries a new SCONE on every call. Every client has its own session and client ID, and
//! the quantity each reply shows is checked against the calls that client made, so a
//! relay that lost a client's state would show up in the `state errors` column.
//! - Sequential: one client per mode on one connection, `WARMUP_CALLS` calls then
//!   `HOP_CALLS` (default 5,000) calls one at a time; the modes take turns call by call,
//!   in an order that rotates, so that every mode sees the same moments of a noisy
//!   machine. p50 and p99 in µs.
//! - Throughput: 64 clients (64 sessions, 64 client IDs) over `HOP_CONNECTIONS` (default
//!   4) connections to the mode's address, 16 clients a connection, each client one call
//!   in flight, for `HOP_SECS` (default 2) seconds, after one warm-up call each. Through
//!   HAProxy that is also 4 connections to the server; the relay forwards all its
//!   clients' calls over its one upstream connection. Repeated for `HOP_ROUNDS` (default
//!   5) rounds, each running every mode once in an order that rotates; calls/s is the
//!   median over rounds, and a throughput ratio is the median of each round's ratio to
//!   HAProxy in the same round.
//! - `proxy CPU`: user + system CPU time of the proxy processes (HAProxy; the relay; both
//!   relays of the mesh) per call, in the throughput runs. On a small machine where
//!   clients, server and proxy share the cores, this is what decides the throughput
//!   ratio: every µs the proxy spends is taken from the server and the clients.
//!
//! Settings (environment): `HOP_MODES`, `HOP_CALLS`, `HOP_SECS`, `HOP_ROUNDS`,
//! `HOP_CONNECTIONS` as above, and `HOP_RELAY_ARGS`, more flags for every relay started,
//! for experiments (say `--pending-wait 0s`, or `--fast` for the mesh). The defaults run
//! in well under two minutes once built (plus HAProxy's install, the first time).
//!
//! Verifies per stored SCONE: when `scone-relay --help` offers `--metrics`, each relay is
//! started with `--metrics 127.0.0.1:0` and its `/metrics` is read before and after the
//! sequential calls and after the throughput rounds; the line printed per relay is
//! `scone_relay_signature_checks_total` over `scone_relay_stores_total` +
//! `scone_relay_stale_stores_total` (the mesh: relay A's, the one called). Below 1 when
//! SCONEs a server minted together share a verified root. A binary without `--metrics`
//! gets no such line.
//!
//! Ends with a table (stdout; progress goes to stderr) and one line,
//! `ratio p50=X throughput=Y`: `relay`'s p50 and calls/s over `haproxy`'s. Target, one
//! relay: p50 at most 1.15x the plain proxy and throughput at least 0.8x.
//!
//! Every await is bounded (10 s a step); child processes are killed at the end, and on a
//! panic (kill on drop).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use examples::cart::{self, CartClient, CartRequest, CartResponse};
use scone::SigningKey;
use scone_rpc::{SconeClient, SconeStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;

const RELAY: &str = env!("CARGO_BIN_EXE_scone-relay");
/// Every await that could hang gets this long.
const LIMIT: Duration = Duration::from_secs(10);
/// Calls in flight in the throughput runs, one per client.
const IN_FLIGHT: usize = 64;
/// Sequential calls per mode before the measured ones.
const WARMUP_CALLS: usize = 300;
/// The item every call adds.
const ITEM: &str = "apple";

type Cart = CartClient<SconeClient<CartRequest, CartResponse>>;

// ---------------------------------------------------------------- settings

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Direct,
    Haproxy,
    Relay,
    RelayMesh,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Direct, Mode::Haproxy, Mode::Relay, Mode::RelayMesh];

    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Haproxy => "haproxy",
            Mode::Relay => "relay",
            Mode::RelayMesh => "relay-mesh",
        }
    }

    /// Thin clients (through a relay, which keeps their SCONEs) or caching ones.
    fn thin(self) -> bool {
        matches!(self, Mode::Relay | Mode::RelayMesh)
    }
}

struct Settings {
    calls: usize,
    window: Duration,
    rounds: usize,
    connections: usize,
    modes: Vec<Mode>,
    /// More flags for every `scone-relay` started (`HOP_RELAY_ARGS`), for experiments.
    relay_args: Vec<String>,
}

/// `name`'s value, or `default` when unset; a bad value stops the bench.
fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let only = std::env::var("HOP_MODES").unwrap_or_default();
        let modes: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|mode| only.is_empty() || only.split(',').any(|m| m.trim() == mode.name()))
            .collect();
        assert!(
            !modes.is_empty(),
            "HOP_MODES={only:?} names no mode (direct, haproxy, relay, relay-mesh)"
        );
        Self {
            calls: env_or("HOP_CALLS", 5_000usize).max(1),
            window: Duration::from_secs_f64(env_or("HOP_SECS", 2.0f64).max(0.1)),
            rounds: env_or("HOP_ROUNDS", 5usize).max(1),
            connections: env_or("HOP_CONNECTIONS", 4usize).clamp(1, IN_FLIGHT),
            modes,
            relay_args: std::env::var("HOP_RELAY_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- bounded waits

/// Awaits `future`, stopping the bench if it takes longer than [`LIMIT`].
async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    bounded_by(LIMIT, what, future).await
}

/// Awaits `future`, stopping the bench if it takes longer than `limit`.
async fn bounded_by<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

// ---------------------------------------------------------------- the cart server

/// The cart server, its accept loop on a runtime of its own (the connections are served
/// on scone-rpc's worker threads).
struct Upstream {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop_tx: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    fn start(key: &SigningKey) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cart-accept")
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("server address");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let key = key.clone();
        let task = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            cart::serve(listener, key, "upstream", stop_rx).await
        });
        Self {
            addr,
            runtime,
            stop_tx,
            task,
        }
    }

    fn stop(self) {
        let _ = self.stop_tx.send(());
        let task = self.task;
        let stopped = self
            .runtime
            .block_on(async { tokio::time::timeout(LIMIT, task).await });
        match stopped {
            Ok(Ok(Ok(()))) => {}
            other => eprintln!("warning: the cart server did not stop cleanly: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- child processes

/// A child process: killed when dropped (`kill_on_drop`), so also when the bench panics.
struct Process {
    name: &'static str,
    child: Child,
    /// Kept open so the child never writes to a closed pipe.
    _stdout: Option<Lines<BufReader<ChildStdout>>>,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Kills it and waits until it is gone.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        if bounded(self.name, self.child.wait()).await.is_err() {
            eprintln!("warning: could not reap {}", self.name);
        }
    }
}

/// User + system CPU seconds of process `pid`, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

/// A running `scone-relay` and the addresses it printed.
struct StartedRelay {
    process: Process,
    addr: SocketAddr,
    mesh: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

/// Whether this `scone-relay` serves `/metrics` (`--metrics ADDR`).
fn relay_has_metrics() -> bool {
    std::process::Command::new(RELAY)
        .arg("--help")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--metrics"))
}

/// A `scone-relay` with `args`, once it listens.
async fn start_relay(name: &'static str, args: &[String]) -> StartedRelay {
    let mut child = Command::new(RELAY)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {RELAY}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let (mut mesh, mut metrics) = (None, None);
    loop {
        let line = bounded("scone-relay saying where it listens", lines.next_line())
            .await
            .expect("read scone-relay's output")
            .unwrap_or_else(|| panic!("{name} exited before listening (see its log above)"));
        if let Some(addr) = line.strip_prefix("mesh listening on ") {
            mesh = Some(addr.trim().parse().expect("a mesh address"));
        } else if let Some(url) = line.strip_prefix("metrics on http://") {
            metrics = url.trim().trim_end_matches("/metrics").parse().ok();
        } else if let Some(addr) = line.strip_prefix("listening on ") {
            let addr = addr.trim().parse().expect("a listen address");
            let process = Process {
                name,
                child,
                _stdout: Some(lines),
            };
            return StartedRelay {
                process,
                addr,
                mesh,
                metrics,
            };
        } else {
            eprintln!("{name}: {line}");
        }
    }
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

/// Whether `haproxy -v` runs.
fn haproxy_runs() -> bool {
    run_bounded(
        std::process::Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        LIMIT,
    )
}

/// Makes sure `haproxy` is on `PATH`, installing Debian's package if it is not.
fn ensure_haproxy() -> bool {
    if haproxy_runs() {
        return true;
    }
    eprintln!("haproxy is not installed: apt-get update, then apt-get install -y haproxy");
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
    let installed = apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "haproxy"]);
    installed && haproxy_runs()
}

/// HAProxy in TCP mode on a free loopback port, forwarding to `upstream`.
async fn start_haproxy(dir: &Path, upstream: SocketAddr) -> (Process, SocketAddr) {
    // A port that was free a moment ago (HAProxy cannot report the one it picked).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = dir.join("haproxy.cfg");
    let text = format!(
        "global\n    maxconn 4096\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n\
         listen hop\n    bind {addr}\n    server cart {upstream}\n"
    );
    std::fs::write(&config, text).expect("write haproxy.cfg");
    let log: PathBuf = dir.join("haproxy.log");
    let log_file = std::fs::File::create(&log).expect("haproxy.log");
    let mut child = Command::new("haproxy")
        .arg("-f")
        .arg(&config)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("haproxy exited ({status}) before listening:\n{log}");
        }
        let connected =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
        if let Ok(Ok(_)) = connected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "haproxy did not listen on {addr} within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let process = Process {
        name: "haproxy",
        child,
        _stdout: None,
    };
    (process, addr)
}

// ---------------------------------------------------------------- clients and calls

/// Where a mode's clients connect, and the proxy processes whose CPU time counts for it.
struct Target {
    mode: Mode,
    addr: SocketAddr,
    pids: Vec<u32>,
    /// The `/metrics` address of the relay called, if it serves one.
    metrics: Option<SocketAddr>,
}

impl Target {
    fn proxy_cpu_seconds(&self) -> f64 {
        self.pids.iter().map(|&pid| cpu_seconds(pid)).sum()
    }

    /// The relay's (signature checks, SCONEs verified for storing) so far, from its
    /// `/metrics`; `None` without one or if it does not answer.
    async fn verify_counters(&self) -> Option<(f64, f64)> {
        let text = scrape(self.metrics?).await?;
        let value = |name: &str| {
            text.lines().find_map(|line| {
                let mut parts = line.split_whitespace();
                match parts.next() == Some(name) {
                    true => parts.next()?.parse::<f64>().ok(),
                    false => None,
                }
            })
        };
        let checks = value("scone_relay_signature_checks_total")?;
        let stored = value("scone_relay_stores_total")?
            + value("scone_relay_stale_stores_total").unwrap_or(0.0);
        Some((checks, stored))
    }
}

/// The body of `GET /metrics` at `addr` (HTTP/1.1, one request, connection closed).
async fn scrape(addr: SocketAddr) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        std::io::Result::Ok(reply)
    };
    match tokio::time::timeout(LIMIT, exchange).await {
        Ok(Ok(reply)) => Some(String::from_utf8_lossy(&reply).into_owned()),
        _ => None,
    }
}

/// "checks per stored SCONE (checks / stored)" between two readings of a relay's counters.
fn verifies_per_store(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> String {
    match (before, after) {
        (Some((c0, s0)), Some((c1, s1))) if s1 > s0 => format!(
            "{:.3} ({:.0} checks / {:.0} stored)",
            (c1 - c0) / (s1 - s0),
            c1 - c0,
            s1 - s0
        ),
        _ => "-".to_string(),
    }
}

/// `count` clients of `target` over `connections` connections, each with its own
/// session and client ID: thin through a relay, caching otherwise.
async fn clients(target: &Target, count: usize, connections: usize) -> Vec<Cart> {
    let service = cart::service_id().expect("cart service ID");
    let mut channels = Vec::new();
    for _ in 0..connections.min(count) {
        let channel = bounded("connect", scone_rpc::client::connect(target.addr))
            .await
            .unwrap_or_else(|e| panic!("{}: connect: {e}", target.mode.name()));
        channels.push(channel);
    }
    (0..count)
        .map(|index| {
            let channel = channels[index % channels.len()].clone();
            let stub = match target.mode.thin() {
                true => SconeClient::thin(channel, service.clone()),
                false => SconeClient::caching(channel, service.clone(), SconeStore::default()),
            };
            CartClient::from(stub.expect("a cart client"))
        })
        .collect()
}

/// One `add` of the item; the quantity the reply shows.
async fn add(client: &Cart) -> u32 {
    let view = bounded(
        "an add",
        client.add(tarpc::context::current(), ITEM.into(), 1),
    )
    .await
    .expect("the call went through")
    .expect("the cart accepted it");
    view.items.get(ITEM).copied().unwrap_or(0)
}

/// The quantity a reply should show after a client's `calls`-th add.
fn expected(calls: usize) -> u32 {
    u32::try_from(calls)
        .unwrap_or(u32::MAX)
        .min(cart::MAX_QUANTITY)
}

// ---------------------------------------------------------------- measurements

struct Latency {
    p50_us: f64,
    p99_us: f64,
    state_errors: usize,
}

/// `calls` sequential calls per target (after a warm-up), one client each on its own
/// connection, the targets taking turns call by call in a rotating order.
async fn sequential(targets: &[Target], calls: usize) -> Vec<Latency> {
    let mut callers = Vec::new();
    for target in targets {
        callers.push(clients(target, 1, 1).await.remove(0));
    }
    let mut samples = vec![Vec::with_capacity(calls); targets.len()];
    let mut errors = vec![0; targets.len()];
    for i in 0..WARMUP_CALLS + calls {
        for turn in 0..targets.len() {
            let index = (i + turn) % targets.len();
            let start = Instant::now();
            let quantity = add(&callers[index]).await;
            let elapsed = start.elapsed();
            if quantity != expected(i + 1) {
                errors[index] += 1;
            }
            if i >= WARMUP_CALLS {
                samples[index].push(elapsed);
            }
        }
    }
    samples
        .into_iter()
        .zip(errors)
        .map(|(mut samples, state_errors)| {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            Latency {
                p50_us: at(0.50).as_secs_f64() * 1e6,
                p99_us: at(0.99).as_secs_f64() * 1e6,
                state_errors,
            }
        })
        .collect()
}

struct Rate {
    calls_per_second: f64,
    proxy_us_per_call: f64,
    state_errors: usize,
}

/// Calls per second with [`IN_FLIGHT`] fresh clients each keeping one call in flight for
/// `settings.window`, after one warm-up call each.
async fn throughput(target: &Target, settings: &Settings) -> Rate {
    let callers = clients(target, IN_FLIGHT, settings.connections).await;
    // One call each first, all at once: the 64 sessions exist before the clock starts.
    let warm = futures::future::join_all(callers.iter().map(add));
    for quantity in bounded("the warm-up calls", warm).await {
        assert_eq!(quantity, 1, "{}: a new session", target.mode.name());
    }
    let cpu_before = target.proxy_cpu_seconds();
    let start = Instant::now();
    let window = settings.window;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            tokio::spawn(async move {
                let (mut calls, mut errors) = (1usize, 0usize);
                while start.elapsed() < window {
                    let quantity = add(&caller).await;
                    calls += 1;
                    if quantity != expected(calls) {
                        errors += 1;
                    }
                }
                (calls - 1, errors)
            })
        })
        .collect();
    let (mut total, mut state_errors) = (0, 0);
    for task in tasks {
        let (calls, errors) = bounded_by(window + LIMIT, "a throughput client", task)
            .await
            .expect("a throughput client panicked");
        total += calls;
        state_errors += errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = target.proxy_cpu_seconds() - cpu_before;
    Rate {
        calls_per_second: total as f64 / elapsed,
        proxy_us_per_call: cpu * 1e6 / total.max(1) as f64,
        state_errors,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

// ---------------------------------------------------------------- the run

/// Starts what each mode needs and returns its target, with the processes to stop.
async fn start_targets(
    settings: &Settings,
    upstream: SocketAddr,
    key: &SigningKey,
    dir: &Path,
) -> (Vec<Target>, Vec<Process>) {
    let mut targets = Vec::new();
    let mut processes = Vec::new();
    let with_metrics = settings.modes.iter().any(|m| m.thin()) && relay_has_metrics();
    let relay_args = || -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--route".into(),
            format!("cart={upstream}"),
            "--trust".into(),
            format!("cart={}", key.public_key()),
        ];
        if with_metrics {
            args.extend(["--metrics".into(), "127.0.0.1:0".into()]);
        }
        args.extend(settings.relay_args.iter().cloned());
        args
    };
    for &mode in &settings.modes {
        let (addr, pids, metrics) = match mode {
            Mode::Direct => (upstream, vec![], None),
            Mode::Haproxy => {
                let (process, addr) = start_haproxy(dir, upstream).await;
                let pid = process.pid();
                processes.push(process);
                (addr, vec![pid], None)
            }
            Mode::Relay => {
                let relay = start_relay("relay", &relay_args()).await;
                let pid = relay.process.pid();
                processes.push(relay.process);
                (relay.addr, vec![pid], relay.metrics)
            }
            Mode::RelayMesh => {
                let secret = dir.join("mesh.secret");
                std::fs::write(&secret, "5a".repeat(32)).expect("write the mesh secret");
                let mesh_args = |peer: Option<SocketAddr>| {
                    let mut args = relay_args();
                    args.extend(["--mesh-listen".into(), "127.0.0.1:0".into()]);
                    args.extend(["--mesh-secret-file".into(), secret.display().to_string()]);
                    if let Some(peer) = peer {
                        args.extend(["--peer".into(), peer.to_string()]);
                    }
                    args
                };
                // B first, with no peers: A needs B's mesh address at start.
                let b = start_relay("relay-mesh B", &mesh_args(None)).await;
                let b_mesh = b.mesh.expect("B prints its mesh address");
                let a = start_relay("relay-mesh A", &mesh_args(Some(b_mesh))).await;
                let pids = vec![a.process.pid(), b.process.pid()];
                processes.extend([a.process, b.process]);
                (a.addr, pids, a.metrics)
            }
        };
        targets.push(Target {
            mode,
            addr,
            pids,
            metrics,
        });
    }
    (targets, processes)
}

async fn run(settings: Settings, upstream: SocketAddr, key: SigningKey) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (targets, processes) = start_targets(&settings, upstream, &key, dir.path()).await;
    let names: Vec<&str> = targets.iter().map(|t| t.mode.name()).collect();
    eprintln!(
        "hop: {} sequential calls per mode; {IN_FLIGHT} in flight over {} connections for {:?} x {} rounds; modes {}",
        settings.calls,
        settings.connections,
        settings.window,
        settings.rounds,
        names.join(", ")
    );

    let mut readings = Vec::new();
    for target in &targets {
        readings.push(target.verify_counters().await);
    }
    let latencies = sequential(&targets, settings.calls).await;
    let mut after_sequential = Vec::new();
    for target in &targets {
        after_sequential.push(target.verify_counters().await);
    }
    for (target, latency) in targets.iter().zip(&latencies) {
        eprintln!(
            "sequential {:<10} p50 {:>7.1} us  p99 {:>7.1} us",
            target.mode.name(),
            latency.p50_us,
            latency.p99_us
        );
    }

    let mut rates: Vec<Vec<Rate>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for turn in 0..targets.len() {
            let index = (round + turn) % targets.len();
            let rate = throughput(&targets[index], &settings).await;
            eprintln!(
                "round {round} {:<10} {:>8.0} calls/s  proxy CPU {:>5.1} us/call",
                targets[index].mode.name(),
                rate.calls_per_second,
                rate.proxy_us_per_call
            );
            rates[index].push(rate);
        }
    }
    let mut after_throughput = Vec::new();
    for target in &targets {
        after_throughput.push(target.verify_counters().await);
    }
    for process in processes {
        process.stop().await;
    }

    // ---- the table
    let haproxy = targets.iter().position(|t| t.mode == Mode::Haproxy);
    let relay = targets.iter().position(|t| t.mode == Mode::Relay);
    // The median over rounds of each round's ratio to HAProxy (rounds are paired).
    let throughput_ratio = |index: usize| {
        haproxy.map(|h| {
            median(
                rates[index]
                    .iter()
                    .zip(&rates[h])
                    .map(|(x, base)| x.calls_per_second / base.calls_per_second)
                    .collect(),
            )
        })
    };
    let p50_ratio = |index: usize| haproxy.map(|h| latencies[index].p50_us / latencies[h].p50_us);
    let or_dash = |ratio: Option<f64>| ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
    println!();
    println!(
        "| mode | p50 us | p99 us | calls/s ({IN_FLIGHT} in flight) | proxy CPU us/call | p50 vs haproxy | calls/s vs haproxy | state errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (index, target) in targets.iter().enumerate() {
        let rate = |f: fn(&Rate) -> f64| median(rates[index].iter().map(f).collect());
        let errors: usize = latencies[index].state_errors
            + rates[index].iter().map(|r| r.state_errors).sum::<usize>();
        let proxy_cpu = match target.pids.is_empty() {
            true => "-".to_string(),
            false => format!("{:.1}", rate(|r| r.proxy_us_per_call)),
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {proxy_cpu} | {} | {} | {errors} |",
            target.mode.name(),
            latencies[index].p50_us,
            latencies[index].p99_us,
            rate(|r| r.calls_per_second),
            or_dash(p50_ratio(index)),
            or_dash(throughput_ratio(index)),
        );
    }
    for (index, target) in targets.iter().enumerate() {
        if target.metrics.is_some() {
            println!(
                "{}: signature checks per stored SCONE: sequential {}, {IN_FLIGHT} in flight {}",
                target.mode.name(),
                verifies_per_store(readings[index], after_sequential[index]),
                verifies_per_store(after_sequential[index], after_throughput[index]),
            );
        }
    }
    let errors: usize = latencies.iter().map(|l| l.state_errors).sum::<usize>()
        + rates
            .iter()
            .flatten()
            .map(|r| r.state_errors)
            .sum::<usize>();
    if errors > 0 {
        println!("warning: {errors} replies showed a quantity other than the client's call count (state lost or rolled back)");
    }
    let (Some(_), Some(relay)) = (haproxy, relay) else {
        println!("(no ratio line: it needs both the haproxy and relay modes)");
        return;
    };
    let (p50, tput) = (
        p50_ratio(relay).unwrap_or(f64::NAN),
        throughput_ratio(relay).unwrap_or(f64::NAN),
    );
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!(
        "target, one relay: p50 <= 1.15x haproxy ({}), throughput >= 0.80x haproxy ({})",
        verdict(p50 <= 1.15),
        verdict(tput >= 0.80)
    );
    println!("ratio p50={p50:.2} throughput={tput:.2}");
}

fn main() {
    let mut settings = Settings::from_env();
    if settings.modes.contains(&Mode::Haproxy) && !ensure_haproxy() {
        eprintln!("warning: haproxy could not be found or installed; leaving out the haproxy mode");
        settings.modes.retain(|&m| m != Mode::Haproxy);
        assert!(!settings.modes.is_empty(), "no mode left to run");
    }
    let key = SigningKey::generate().expect("a signing key");
    let upstream = Upstream::start(&key);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(run(settings, upstream.addr, key));
    drop(runtime);
    upstream.stop();
}
