//! SCONE cart against the same cart as plain tarpc with its state in a server-side
//! `HashMap` behind a lock, side by side in one run.
//!
//! `cargo bench -p scone-rpc --bench vs_baseline`
//!
//! Each server runs in its own process (this binary, re-executed in server mode), so its
//! memory can be read from `/proc`; the client runs here. Both speak postcard in
//! length-delimited frames over loopback TCP: the baseline through tarpc's own
//! `serde_transport`, the SCONE servers through scone-rpc's transport (which decodes frames
//! in place and encodes straight into the write buffer) on its thread-per-core workers;
//! `scone-read` shows what that plumbing alone is worth. Every call changes a 256-byte
//! state, so the SCONE server mints and signs on every call (its worst case). Both are
//! built with the workspace's release profile (fat LTO, one codegen unit); in an
//! interleaved A/B it raised the SCONE/baseline throughput ratio by about 9%, since more of
//! the SCONE request path crosses crate boundaries. A service built on these crates gets
//! the same from the same profile.
//!
//! Sequential calls take turns across the servers call by call. Throughput is measured in
//! rounds, each running every server once for the same window, in an order that rotates
//! from round to round; a server's throughput ratio is the median over rounds of its ratio
//! to the baseline *in the same round*, so that a noisy machine hits every server alike.
//! It prints a table of medians and ends with one line: `ratio throughput=X p50=Y` (SCONE
//! with group signing over the baseline).
//!
//! Servers: `baseline` (plain tarpc, state in a locked `HashMap`), `scone` (the default
//! layer: presigned nonces, group signing), `scone-single` (one signature per SCONE),
//! `scone-read` (the state is carried and verified on every call but never changes, so
//! nothing is minted: the cost of carrying alone), and on request `scone-mt` (the layer on
//! tokio's work-stealing runtime instead of our thread-per-core workers), `scone-guarded`
//! (with the replay guard: one watermark per session, checked and claimed on every call;
//! its memory is measured beside the baseline's) and `scone-sealed` (the state sealed with
//! XChaCha20-Poly1305 on every mint and opened on every call).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use scone::{ServiceId, SigningKey};
use scone_rpc::codec::Postcard;
use scone_rpc::server::{LayerConfig, ServerConfig};
use scone_rpc::state::SconeState;
use scone_rpc::{SconeClient, SconeLayer, SconeStore};
use serde::{Deserialize, Serialize};
use tarpc::server::{BaseChannel, Channel};
use tarpc::{client, context};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const STATE_BYTES: usize = 256;
const SEQUENTIAL_CALLS: usize = 5_000;
const IN_FLIGHT: usize = 64;
const CONNECTIONS: usize = 4;
const THROUGHPUT_WINDOW: Duration = Duration::from_millis(2_000);
const ROUNDS: usize = 7;
const SESSIONS_SMALL: usize = 1_000;
const SESSIONS_LARGE: usize = 100_000;
const SERVER_MODE: &str = "VS_BASELINE_SERVER";

/// Baseline session IDs are never reused, so every measurement starts fresh sessions.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// The cart's state: 256 bytes that every call changes.
#[derive(SconeState, Serialize, Deserialize, Debug, Clone)]
#[scone(service = "bench-cart")]
struct CartState {
    calls: u64,
    items: serde_bytes::ByteBuf,
}

impl Default for CartState {
    fn default() -> Self {
        Self {
            calls: 0,
            items: serde_bytes::ByteBuf::from(vec![0; STATE_BYTES - 8]),
        }
    }
}

impl CartState {
    fn touch(&mut self, item: u8) -> u64 {
        let slot = (self.calls as usize) % self.items.len();
        self.items[slot] = item;
        self.calls += 1;
        self.calls
    }
}

/// The baseline: the session ID travels as an argument, the state stays on the server.
#[tarpc::service]
trait PlainCart {
    async fn touch(session: u64, item: u8) -> u64;
}

#[derive(Clone, Default)]
struct PlainCartServer {
    sessions: Arc<Mutex<HashMap<u64, CartState>>>,
}

impl PlainCart for PlainCartServer {
    async fn touch(self, _: context::Context, session: u64, item: u8) -> u64 {
        let mut sessions = self.sessions.lock().unwrap();
        sessions.entry(session).or_default().touch(item)
    }
}

/// The SCONE cart: no session argument, no server-side state.
#[tarpc::service]
trait SconeCart {
    async fn touch(item: u8) -> u64;
}

#[derive(Clone)]
struct SconeCartServer {
    /// Profiling aid (mode `scone-read`): read the state but never change it, so nothing
    /// is minted; isolates the cost of carrying and verifying from the cost of minting.
    read_only: bool,
}

impl SconeCart for SconeCartServer {
    async fn touch(self, _: context::Context, item: u8) -> u64 {
        let Ok(mut cart) = CartState::load() else {
            return 0;
        };
        if self.read_only && cart.tracker().is_loaded() {
            return cart.calls;
        }
        let slot = (cart.calls as usize) % cart.items.len();
        cart.items_mut()[slot] = item;
        *cart.calls_mut() += 1;
        let calls = cart.calls;
        let _ = cart.save();
        calls
    }
}

// ---------------------------------------------------------------- server processes

fn postcard_transport<Item, SinkItem>(
    stream: TcpStream,
) -> tarpc::serde_transport::Transport<TcpStream, Item, SinkItem, Postcard<Item, SinkItem>>
where
    Item: for<'de> Deserialize<'de>,
    SinkItem: Serialize,
{
    stream.set_nodelay(true).unwrap();
    tarpc::serde_transport::new(
        Framed::new(stream, LengthDelimitedCodec::new()),
        Postcard::default(),
    )
}

/// Both sides run on two worker threads: the machine's two cores.
fn two_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run_server(mode: &str) {
    let runtime = two_thread_runtime();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        // The parent closes our stdin to stop us.
        let stop = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_line(&mut String::new());
        });
        match mode {
            "baseline" => {
                let server = PlainCartServer::default();
                let accept = async {
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        let server = server.clone();
                        tokio::spawn(
                            BaseChannel::with_defaults(postcard_transport(stream))
                                .execute(server.serve())
                                .for_each(|request| async {
                                    tokio::spawn(request);
                                }),
                        );
                    }
                };
                tokio::select! { () = accept => {}, _ = stop => {} }
            }
            "scone-mt" => {
                // The SCONE layer on tokio's work-stealing runtime, spawned like the baseline.
                let layer = SconeLayer::new(
                    ServiceId::new("bench-cart").unwrap(),
                    SigningKey::from_seed(&[9; 32]),
                )
                .unwrap();
                let serve = layer.wrap(SconeCartServer { read_only: false }.serve());
                let accept = async {
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        let transport = scone_rpc::codec::server_transport(stream, 1 << 20);
                        tokio::spawn(
                            BaseChannel::with_defaults(transport)
                                .execute(serve.clone())
                                .for_each(|request| async {
                                    tokio::spawn(request);
                                }),
                        );
                    }
                };
                tokio::select! { () = accept => {}, _ = stop => {} }
            }
            scone_mode => {
                let group = if scone_mode == "scone-single" { 1 } else { 64 };
                let layer = SconeLayer::with_config(
                    ServiceId::new("bench-cart").unwrap(),
                    SigningKey::from_seed(&[9; 32]),
                    scone::KeyRing::new(),
                    LayerConfig {
                        max_signing_group: group,
                        replay_guard: (scone_mode == "scone-guarded")
                            .then(|| Arc::new(scone_rpc::server::MemoryWatermarks::default()) as _),
                        sealed_state: scone_mode == "scone-sealed",
                        ..LayerConfig::default()
                    },
                )
                .unwrap();
                let config = ServerConfig {
                    workers: 2,
                    ..ServerConfig::default()
                };
                let server = SconeCartServer {
                    read_only: scone_mode == "scone-read",
                };
                scone_rpc::server::run(listener, layer.wrap(server.serve()), config, stop)
                    .await
                    .unwrap();
                let stats = layer.signing_stats();
                if stats.signatures > 0 {
                    eprintln!(
                        "{scone_mode}: {} scones under {} signatures (mean group {:.1})",
                        stats.scones,
                        stats.signatures,
                        stats.scones as f64 / stats.signatures as f64
                    );
                }
            }
        }
    });
}

/// User + system CPU time of process `pid`, from `/proc/PID/stat`.
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

/// A server process; stopped (stdin closed, then killed) on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(mode: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVER_MODE, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().parse().unwrap();
        Self { child, addr }
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- clients

/// One kind of client: a call that changes the state of session `session`.
#[derive(Clone)]
enum Caller {
    Baseline(PlainCartClient, u64),
    Scone(SconeCartClient<SconeClient<SconeCartRequest, SconeCartResponse>>),
}

impl Caller {
    async fn call(&self, item: u8) -> u64 {
        let ctx = context::current();
        let result = match self {
            Caller::Baseline(client, session) => client.touch(ctx, *session, item).await,
            Caller::Scone(client) => client.touch(ctx, item).await,
        };
        result.expect("call succeeded")
    }
}

async fn baseline_channel(addr: SocketAddr) -> PlainCartClient {
    let stream = TcpStream::connect(addr).await.unwrap();
    PlainCartClient::new(client::Config::default(), postcard_transport(stream)).spawn()
}

/// `sessions` callers over `CONNECTIONS` connections; `thin` SCONE callers keep nothing.
async fn callers_for(mode: &str, addr: SocketAddr, sessions: usize, thin: bool) -> Vec<Caller> {
    let mut callers = Vec::with_capacity(sessions);
    if mode == "baseline" {
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(baseline_channel(addr).await);
        }
        for index in 0..sessions {
            let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
            callers.push(Caller::Baseline(
                channels[index % CONNECTIONS].clone(),
                session,
            ));
        }
    } else {
        let service = ServiceId::new("bench-cart").unwrap();
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(scone_rpc::client::connect(addr).await.unwrap());
        }
        for session in 0..sessions {
            let channel = channels[session % CONNECTIONS].clone();
            let stub = if thin {
                SconeClient::thin(channel, service.clone()).unwrap()
            } else {
                SconeClient::caching(channel, service.clone(), SconeStore::default()).unwrap()
            };
            callers.push(Caller::Scone(SconeCartClient::from(stub)));
        }
    }
    callers
}

struct Latency {
    p50_us: f64,
    p99_us: f64,
}

/// Sequential round trips, one caller per server, taking turns call by call so that every
/// server sees the same moments of the machine (this matters on a noisy VM). The turn
/// order rotates every call, so no server always follows the same one (a server whose
/// runtime is still winding down from its call would otherwise always slow the next).
async fn sequential(servers: &[(&str, &ServerProcess)]) -> Vec<Latency> {
    let mut callers = Vec::new();
    for (mode, server) in servers {
        callers.push(callers_for(mode, server.addr, 1, false).await.remove(0));
    }
    let mut samples = vec![Vec::with_capacity(SEQUENTIAL_CALLS); callers.len()];
    for i in 0..(300 + SEQUENTIAL_CALLS) {
        for turn in 0..callers.len() {
            let index = (i + turn) % callers.len();
            let (caller, samples, (mode, _)) =
                (&callers[index], &mut samples[index], &servers[index]);
            let start = Instant::now();
            let calls = caller.call(i as u8).await;
            let elapsed = start.elapsed();
            if *mode != "scone-read" {
                assert_eq!(calls, i as u64 + 1, "{mode}: state carried across calls");
            }
            if i >= 300 {
                samples.push(elapsed);
            }
        }
    }
    samples
        .into_iter()
        .map(|mut samples| {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            Latency {
                p50_us: at(0.50).as_secs_f64() * 1e6,
                p99_us: at(0.99).as_secs_f64() * 1e6,
            }
        })
        .collect()
}

/// Calls per second with `IN_FLIGHT` calls in flight, and the CPU each process spent per call.
struct Throughput {
    calls_per_second: f64,
    server_us_per_call: f64,
    client_us_per_call: f64,
}

async fn throughput(mode: &str, server: &ServerProcess) -> Throughput {
    let callers = callers_for(mode, server.addr, IN_FLIGHT, false).await;
    let (server_cpu, client_cpu) = (server.cpu_seconds(), cpu_seconds(std::process::id()));
    let start = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            tokio::spawn(async move {
                let mut calls = 0u64;
                while start.elapsed() < THROUGHPUT_WINDOW {
                    caller.call(calls as u8).await;
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_call = |seconds: f64| seconds * 1e6 / total as f64;
    Throughput {
        calls_per_second: total as f64 / elapsed,
        server_us_per_call: per_call(server.cpu_seconds() - server_cpu),
        client_us_per_call: per_call(cpu_seconds(std::process::id()) - client_cpu),
    }
}

/// Creates `sessions` sessions (one call each, 64 in flight) and returns the server's RSS.
async fn rss_after_sessions(mode: &str, server: &ServerProcess, sessions: usize) -> u64 {
    let callers = callers_for(mode, server.addr, IN_FLIGHT.min(sessions), true).await;
    let per_caller = sessions / callers.len();
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    let caller = match &caller {
                        // A new session per call: a fresh key for the baseline, a thin
                        // client (which keeps nothing) for SCONE.
                        Caller::Baseline(client, _) => Caller::Baseline(
                            client.clone(),
                            NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                        ),
                        scone => scone.clone(),
                    };
                    caller.call(1).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    server.rss_kib()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

fn main() {
    if let Ok(mode) = std::env::var(SERVER_MODE) {
        return run_server(&mode);
    }
    let runtime = two_thread_runtime();
    runtime.block_on(async {
        // VS_BASELINE_MODES=scone (say) runs the modes named, once, for profiling;
        // `scone-mt` (the layer on tokio's work-stealing runtime) runs only when named.
        let only = std::env::var("VS_BASELINE_MODES").unwrap_or_default();
        let modes: Vec<&str> = [
            "baseline",
            "scone",
            "scone-guarded",
            "scone-sealed",
            "scone-single",
            "scone-read",
            "scone-mt",
        ]
            .into_iter()
            .filter(|mode| match only.is_empty() {
                true => *mode != "scone-mt",
                false => only.split(',').any(|m| m == *mode),
            })
            .collect();
        let servers: Vec<ServerProcess> = modes.iter().map(|m| ServerProcess::start(m)).collect();
        let mut p50: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut p99: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut tput: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut server_cpu: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut client_cpu: HashMap<&str, Vec<f64>> = HashMap::new();
        // VS_BASELINE_ROUNDS overrides the number of throughput rounds.
        let rounds = std::env::var("VS_BASELINE_ROUNDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(if only.is_empty() { ROUNDS } else { 1 });
        let pairs: Vec<(&str, &ServerProcess)> = modes.iter().copied().zip(&servers).collect();
        for latency in sequential(&pairs).await.into_iter().zip(&modes) {
            let (latency, mode) = latency;
            eprintln!("sequential {mode:<12} p50 {:>6.1} us  p99 {:>6.1} us", latency.p50_us, latency.p99_us);
            p50.entry(mode).or_default().push(latency.p50_us);
            p99.entry(mode).or_default().push(latency.p99_us);
        }
        for round in 0..rounds {
            for turn in 0..pairs.len() {
                let (mode, server) = &pairs[(round + turn) % pairs.len()];
                let rate = throughput(mode, server).await;
                eprintln!(
                    "round {round} {mode:<12} {:>7.0} calls/s  cpu per call: server {:>5.1} us, client {:>5.1} us",
                    rate.calls_per_second, rate.server_us_per_call, rate.client_us_per_call
                );
                tput.entry(mode).or_default().push(rate.calls_per_second);
                server_cpu.entry(mode).or_default().push(rate.server_us_per_call);
                client_cpu.entry(mode).or_default().push(rate.client_us_per_call);
            }
        }
        drop(servers);

        let mut memory = HashMap::new();
        for mode in ["baseline", "scone", "scone-guarded"].into_iter().filter(|m| modes.contains(m)) {
            let server = ServerProcess::start(mode);
            let small = rss_after_sessions(mode, &server, SESSIONS_SMALL).await;
            let large = rss_after_sessions(mode, &server, SESSIONS_LARGE - SESSIONS_SMALL).await;
            memory.insert(mode, (small, large));
        }

        println!();
        println!("| server | p50 us | p99 us | calls/s ({IN_FLIGHT} in flight) | server CPU us/call | client CPU us/call | RSS at 1k sessions | RSS at 100k sessions |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for &mode in &modes {
            let (small, large) = memory
                .get(mode)
                .map(|(s, l)| (format!("{} KiB", s), format!("{} KiB", l)))
                .unwrap_or(("-".into(), "-".into()));
            println!(
                "| {mode} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {small} | {large} |",
                median(p50[mode].clone()),
                median(p99[mode].clone()),
                median(tput[mode].clone()),
                median(server_cpu[mode].clone()),
                median(client_cpu[mode].clone()),
            );
        }
        if !(modes.contains(&"baseline") && modes.contains(&"scone")) {
            return;
        }
        // Paired: the median over rounds of each round's ratio (p50 has one round).
        let ratio = |m: &HashMap<&str, Vec<f64>>, mode| {
            median(m[mode].iter().zip(&m["baseline"]).map(|(x, base)| x / base).collect())
        };
        let per_round: Vec<String> = tput["scone"]
            .iter()
            .zip(&tput["baseline"])
            .map(|(x, base)| format!("{:.3}", x / base))
            .collect();
        println!("scone throughput ratio by round: {}", per_round.join(" "));
        for (mode, what) in [
            ("scone-guarded", "with the replay guard"),
            ("scone-sealed", "state sealed with XChaCha20-Poly1305"),
            ("scone-single", "one signature per SCONE"),
            ("scone-read", "carried and verified, never re-minted"),
            ("scone-mt", "on the work-stealing runtime"),
        ] {
            if modes.contains(&mode) {
                println!(
                    "{mode} ({what}): throughput {:.3}x, p50 {:.3}x the baseline",
                    ratio(&tput, mode),
                    ratio(&p50, mode)
                );
            }
        }
        println!("ratio throughput={:.3} p50={:.3}", ratio(&tput, "scone"), ratio(&p50, "scone"));
    });
}
