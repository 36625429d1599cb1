//! A randomized fault test, Jepsen-style: a cluster of `cart-server --placement cluster`
//! processes on 127.0.0.1 under a load of many sessions, with nodes killed (SIGKILL) and
//! restarted, paused (SIGSTOP, then SIGCONT: a node cut off for a while) and slowed
//! (SIGSTOP and SIGCONT over and over: a slow link, whose node runs requests long after
//! their callers gave up on it), round after round. Then a checker reads every session
//! back and proves that every acknowledged update is there, and that no session went
//! backwards.
//!
//! ```sh
//! cargo test -p tests --test jepsen -- --nocapture                        # short profile (CI)
//! JEPSEN_PROFILE=long cargo test -p tests --test jepsen -- --nocapture    # longer
//! JEPSEN_SEED=N cargo test -p tests --test jepsen -- --nocapture          # replay seed N
//! ```
//!
//! **Profiles.** `short` (the default, what CI runs): 3 nodes, k = 1, 4 rounds of one
//! fault each. `long` (`JEPSEN_PROFILE=long`): 5 nodes, k = 2, 12 rounds of one or two
//! faults at once. `JEPSEN_ROUNDS=N` changes the number of rounds of either;
//! `JEPSEN_ATTEMPT_MS=N` the client's attempt timeout (default 500 ms, the channel's
//! default): shorter, more calls time out on a slow node and run again on another while
//! the first may still run (what a loaded machine does too).
//!
//! **Seed.** The fault schedule (which nodes, which fault, when, for how long) is drawn
//! up front from one seed: `JEPSEN_SEED`, or the clock. The test prints `seed=N` first,
//! and again when it fails; `JEPSEN_SEED=N` replays the same schedule on the same ports.
//! Timing is not replayed: which calls are in flight when a fault hits depends on the
//! machine.
//!
//! **Faults.** Each round: load for a while, then the round's faults (kill 50%, pause
//! 30%, slow 20%), each on a node drawn from the seed or on the node that is primary for
//! the most sessions at that moment (also drawn). k = 1 tolerates one failure at a time, so the short profile has one
//! fault per round; with k = 2, up to two nodes at once. A killed node loses its memory;
//! it is restarted on the same ports (picked up front, below the ephemeral range) and
//! rejoins empty. Before the next round the test waits (bounded) until the cluster has
//! recovered: every node sees every node as a member, and every session had an update
//! acknowledged that was sent after the last fault healed (so it holds k + 1 copies on
//! nodes that are up again; without this, two faults in a row could take both copies of a
//! session that was idle meanwhile, the known limit of k = 1).
//!
//! **Load.** Sessions on one shared `ClusterChannel` (thin clients: the channel keeps each
//! session's routing token), each adding a unique item `s{session}-u{n}` every few hundred
//! milliseconds. After each acknowledged `add` the test records the version the token
//! names, and checks that the reply holds every item seen in an earlier reply and that the
//! version went up. Each session keeps a line per call (when, which node, which token or
//! error): a violation shows the calls around the item that went missing.
//!
//! **Checker.** Once the load stopped and every fault healed, for every session: read the
//! cart twice, then add one more item. Every acknowledged item must be in the cart (lost =
//! 0); the second read must hold all of the first; the last `add` must be acknowledged at a
//! version above every version acknowledged before. Items added twice (a call run again
//! on another node after a failover: at least once) are allowed and counted. Failed calls
//! are counted by refusal kind or error, with their retry advice.
//!
//! **Failure.** The test panics with the seed, the failed checks and the last lines of
//! each node's log; the timeline it printed as it went shows the faults and recoveries.
//! A round after which the cluster does not recover within 20 s ends the faults; the
//! checker still runs and says what the cluster kept.
//!
//! **Binary.** It builds the `cart-server` example with the cargo that runs the test
//! (`examples::procs::build_for_test`); `JEPSEN_CART_SERVER=PATH` runs that binary
//! instead.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use examples::cart::{CartClient, CartRequest, CartResponse, CartState, CartView};
use examples::procs::{self, Binary, Options, Process};
use scone::{ClientId, ServiceId};
use scone_cluster::{ClusterChannel, ClusterClientConfig, RoutingToken};
use scone_rpc::{CallError, SconeClient};
use tarpc::client::RpcError;
use tarpc::context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// A thin cart client on the cluster.
type ThinCart = CartClient<SconeClient<CartRequest, CartResponse, ClusterChannel>>;

/// Bound of one call (the channel bounds each attempt by 500 ms; this catches a hang).
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// Bound of the wait for the cluster to recover after a round's faults.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// How often the recovery is polled.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// Bound of one scrape of a node's `/metrics`.
const SCRAPE_LIMIT: Duration = Duration::from_secs(1);
/// Tries of each read (and of the last `add`) of the checker.
const CHECK_ATTEMPTS: usize = 5;
/// Starts of a node before giving up (a port of a killed node may take a moment).
const START_ATTEMPTS: usize = 3;
/// What the nodes log: warnings, and the cluster's own notes (read repair); not tarpc's
/// line per request past its deadline (many, during a fault).
const NODE_LOG: &str = "warn,scone_cluster=info,tarpc::server::in_flight_requests=off,\
                        tarpc::client::in_flight_requests=off";
/// Lines of each node's standard error kept, shown when the test fails.
const LOG_KEEP: usize = 400;
/// Lines of each node's log shown when the test fails.
const LOG_SHOW: usize = 50;

/// How big and how long a run is.
#[derive(Clone, Debug)]
struct Profile {
    name: &'static str,
    nodes: usize,
    /// k: copies of each new version made before the reply.
    replicas: usize,
    rounds: usize,
    sessions: usize,
    /// Each session sends its next `add` this long after the last one was sent.
    pace: Duration,
    /// Most nodes killed or paused at once: at most k.
    max_faults: usize,
    /// Bound of the whole run once the binary is built.
    budget: Duration,
    /// The client's attempt timeout (`ClusterClientConfig::attempt_timeout`).
    attempt_timeout: Duration,
}

impl Profile {
    fn short() -> Self {
        Self {
            name: "short",
            nodes: 3,
            replicas: 1,
            rounds: 4,
            sessions: 32,
            pace: Duration::from_millis(250),
            max_faults: 1,
            budget: Duration::from_secs(150),
            attempt_timeout: ClusterClientConfig::default().attempt_timeout,
        }
    }

    fn long() -> Self {
        Self {
            name: "long",
            nodes: 5,
            replicas: 2,
            rounds: 12,
            sessions: 48,
            pace: Duration::from_millis(300),
            max_faults: 2,
            budget: Duration::from_secs(900),
            attempt_timeout: ClusterClientConfig::default().attempt_timeout,
        }
    }

    /// `JEPSEN_PROFILE` (`short` or `long`), `JEPSEN_ROUNDS` and `JEPSEN_ATTEMPT_MS`.
    fn from_env() -> anyhow::Result<Self> {
        let mut profile = match std::env::var("JEPSEN_PROFILE").as_deref() {
            Err(_) | Ok("") | Ok("short") => Self::short(),
            Ok("long") => Self::long(),
            Ok(other) => bail!("JEPSEN_PROFILE={other:?}: expected `short` or `long`"),
        };
        if let Ok(rounds) = std::env::var("JEPSEN_ROUNDS") {
            profile.rounds = rounds
                .parse()
                .with_context(|| format!("JEPSEN_ROUNDS={rounds:?} is not a number"))?;
            // Each round takes a few seconds: keep the bound in step.
            profile.budget += Duration::from_secs(20) * profile.rounds as u32;
        }
        if let Ok(ms) = std::env::var("JEPSEN_ATTEMPT_MS") {
            let ms: u64 = ms
                .parse()
                .with_context(|| format!("JEPSEN_ATTEMPT_MS={ms:?} is not a number"))?;
            profile.attempt_timeout = Duration::from_millis(ms.max(1));
        }
        anyhow::ensure!(
            profile.max_faults <= profile.replicas && profile.replicas < profile.nodes,
            "a profile may fault at most k nodes at once, and needs more than k nodes"
        );
        Ok(profile)
    }
}

/// `JEPSEN_SEED`, or one from the clock.
fn seed() -> anyhow::Result<u64> {
    match std::env::var("JEPSEN_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("JEPSEN_SEED={text:?} is not a number")),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // Microseconds: short enough to type back.
            Ok(u64::try_from(now.as_micros()).unwrap_or(u64::MAX) ^ u64::from(std::process::id()))
        }
    }
}

/// The command that replays `seed` in `profile`.
fn replay(seed: u64, profile: &Profile) -> String {
    let (mut env, default) = match profile.name {
        "long" => (" JEPSEN_PROFILE=long".to_owned(), Profile::long()),
        _ => (String::new(), Profile::short()),
    };
    if profile.rounds != default.rounds {
        env += &format!(" JEPSEN_ROUNDS={}", profile.rounds);
    }
    if profile.attempt_timeout != default.attempt_timeout {
        env += &format!(" JEPSEN_ATTEMPT_MS={}", profile.attempt_timeout.as_millis());
    }
    format!("JEPSEN_SEED={seed}{env} cargo test -p tests --test jepsen -- --nocapture")
}

/// Prints the seed again if the test panics (an `expect` anywhere), so the failure
/// replays.
struct SeedOnPanic(String);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("jepsen FAILED: {}", self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The schedule.

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    /// SIGKILL, then a restart on the same ports `down` later.
    Kill { down: Duration },
    /// SIGSTOP, then SIGCONT `paused` later.
    Pause { paused: Duration },
    /// A slow node: for `total`, stopped `stopped` (SIGSTOP), then running `running`
    /// (SIGCONT), again and again. It takes requests and runs some of them late, long
    /// after their callers gave up and went to another node.
    Slow {
        total: Duration,
        stopped: Duration,
        running: Duration,
    },
}

/// What the test does to a node at one moment of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Kill,
    Stop,
    Continue,
    Restart,
}

#[derive(Clone, Copy, Debug)]
struct Fault {
    /// Index into the nodes; `None`: the node that is primary for the most sessions when
    /// the fault starts (sessions stay with the primary that took them over, so without
    /// this the primaries end up on the nodes that were spared and the faults hit only
    /// secondaries).
    node: Option<usize>,
    /// From the round's first fault.
    at: Duration,
    kind: FaultKind,
}

impl Fault {
    /// What it does, when (from the round's first fault).
    fn actions(&self) -> Vec<(Duration, Action)> {
        match self.kind {
            FaultKind::Kill { down } => {
                vec![(self.at, Action::Kill), (self.at + down, Action::Restart)]
            }
            FaultKind::Pause { paused } => {
                vec![
                    (self.at, Action::Stop),
                    (self.at + paused, Action::Continue),
                ]
            }
            FaultKind::Slow {
                total,
                stopped,
                running,
            } => {
                let mut actions = Vec::new();
                let mut at = Duration::ZERO;
                while at < total {
                    actions.push((self.at + at, Action::Stop));
                    at += stopped;
                    actions.push((self.at + at, Action::Continue));
                    at += running;
                }
                actions
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Round {
    /// Load before the first fault (after the cluster recovered from the last round).
    load_before: Duration,
    /// On distinct nodes; no more than the profile's `max_faults`.
    faults: Vec<Fault>,
}

fn ms(rng: &mut fastrand::Rng, range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(rng.u64(range))
}

/// The whole schedule, drawn from `seed` before anything runs: the same seed, the same
/// schedule, however the run goes.
fn schedule(profile: &Profile, seed: u64) -> Vec<Round> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..profile.rounds)
        .map(|_| {
            let load_before = ms(&mut rng, 300..=1200);
            let count = rng.usize(1..=profile.max_faults);
            let mut nodes: Vec<usize> = (0..profile.nodes).collect();
            rng.shuffle(&mut nodes);
            let faults = nodes[..count]
                .iter()
                .enumerate()
                .map(|(i, &node)| {
                    // Faults of one round start together or a little apart.
                    let at = if i == 0 {
                        Duration::ZERO
                    } else {
                        ms(&mut rng, 0..=400)
                    };
                    let kind = match rng.u8(0..10) {
                        0..=4 => FaultKind::Kill {
                            down: ms(&mut rng, 500..=1500),
                        },
                        5..=7 => FaultKind::Pause {
                            paused: ms(&mut rng, 1000..=2000),
                        },
                        _ => FaultKind::Slow {
                            total: ms(&mut rng, 1000..=2000),
                            stopped: ms(&mut rng, 150..=400),
                            running: ms(&mut rng, 20..=100),
                        },
                    };
                    let node = if rng.bool() { None } else { Some(node) };
                    Fault { node, at, kind }
                })
                .collect();
            Round {
                load_before,
                faults,
            }
        })
        .collect()
}

fn describe(fault: &Fault) -> String {
    let node = match fault.node {
        Some(index) => format!("node-{}", index + 1),
        None => "the busiest primary".into(),
    };
    match fault.kind {
        FaultKind::Kill { down } => format!("kill {node} for {} ms", down.as_millis()),
        FaultKind::Pause { paused } => format!("pause {node} for {} ms", paused.as_millis()),
        FaultKind::Slow {
            total,
            stopped,
            running,
        } => format!(
            "slow {node} for {} ms (stopped {} ms, running {} ms, over and over)",
            total.as_millis(),
            stopped.as_millis(),
            running.as_millis()
        ),
    }
}

/// The node, not in `spared`, that the most sessions' tokens name as primary (the lowest
/// index among equals), and how many.
fn busiest_primary(
    nodes: &[Node],
    channel: &ClusterChannel,
    service: &ServiceId,
    ids: &[ClientId],
    spared: &[usize],
) -> (usize, usize) {
    let mut counts = vec![0; nodes.len()];
    for id in ids {
        if let Some(token) = channel.token(*id, service) {
            if let Some(index) = nodes.iter().position(|n| n.ports.rpc == token.primary) {
                counts[index] += 1;
            }
        }
    }
    (0..nodes.len())
        .filter(|index| !spared.contains(index))
        .map(|index| (index, counts[index]))
        .max_by_key(|&(index, count)| (count, std::cmp::Reverse(index)))
        .unwrap_or((0, 0))
}

// ---------------------------------------------------------------------------------------
// Ports and nodes.

/// A node's addresses: the same in every incarnation.
#[derive(Clone, Copy, Debug)]
struct Ports {
    rpc: SocketAddr,
    peer: SocketAddr,
    gossip: SocketAddr,
    metrics: SocketAddr,
}

/// `count` distinct ports free for TCP and UDP on 127.0.0.1, below the ephemeral range (so
/// no outgoing connection takes one while its node is down), drawn from `rng`.
fn free_ports(count: usize, rng: &mut fastrand::Rng) -> anyhow::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (20_000u16, ephemeral_low.max(21_000));
    let mut ports = Vec::with_capacity(count);
    for _ in 0..10_000 {
        if ports.len() == count {
            break;
        }
        let port = rng.u16(low..high);
        if ports.contains(&port) {
            continue;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            ports.push(port);
        }
    }
    anyhow::ensure!(
        ports.len() == count,
        "found only {} free ports in {low}..{high}",
        ports.len()
    );
    Ok(ports)
}

/// What a node wrote on its standard error, across its incarnations: the last lines.
#[derive(Default)]
struct NodeLog {
    lines: VecDeque<String>,
    total: usize,
}

type SharedLog = Arc<Mutex<NodeLog>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One cart node: its process while it runs, and how to start it again.
struct Node {
    /// 1-based, as in `node-1`.
    number: usize,
    ports: Ports,
    args: Vec<String>,
    process: Option<Process>,
    paused: bool,
    /// Starts so far.
    incarnations: usize,
    log: SharedLog,
}

impl Node {
    fn name(&self) -> String {
        format!("node-{}", self.number)
    }

    /// Starts it (again) on its ports; bounded.
    async fn start(&mut self, binary: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(self.process.is_none(), "{} runs already", self.name());
        let name = self.name();
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let options = Options {
                rust_log: NODE_LOG.into(),
                // The last try shows its standard error as it is, to say why it fails.
                capture_stderr: attempt < START_ATTEMPTS,
            };
            let started = Process::start_with(&name, binary, &self.args, &options, |line| {
                line.starts_with("metrics on ")
            })
            .await;
            let (mut process, lines) = match started {
                Ok(started) => started,
                Err(error) => {
                    last_error = Some(error);
                    // Pacing between tries: a killed node's port may still be in use.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
            let rpc: SocketAddr = lines[0]
                .parse()
                .with_context(|| format!("{name} printed {:?} first", lines[0]))?;
            anyhow::ensure!(
                rpc == self.ports.rpc,
                "{name} listens on {rpc}, not {}",
                self.ports.rpc
            );
            self.incarnations += 1;
            if let Some(stderr) = process.take_stderr() {
                let log = Arc::clone(&self.log);
                let tag = format!("{name}#{}", self.incarnations);
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let mut log = lock(&log);
                        if log.lines.len() == LOG_KEEP {
                            log.lines.pop_front();
                        }
                        log.lines.push_back(format!("[{tag}] {line}"));
                        log.total += 1;
                    }
                });
            }
            self.process = Some(process);
            self.paused = false;
            return Ok(());
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{name} did not start")))
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Process::pid)
    }

    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid")?;
        anyhow::ensure!(pid > 0, "{} is not running", self.name());
        // SAFETY: kill(2) with a valid signal number; the pid is our own child, not yet
        // reaped (only `kill` waits for it), so it names no other process.
        let result = unsafe { libc::kill(pid, signal) };
        if result != 0 {
            bail!(
                "signal {signal} to {}: {}",
                self.name(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// SIGSTOP: it stops answering anything, gossip included, and keeps its memory.
    fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// SIGKILL (resumed first if paused), and waits for it to be gone (bounded): its exit
    /// status, and how long it took to be reaped after the signal.
    async fn kill(&mut self) -> anyhow::Result<(ExitStatus, Duration)> {
        if self.paused {
            self.resume()?;
        }
        // The signal now, so that the fault lands on time however long reaping takes.
        self.signal(libc::SIGKILL)?;
        let killed = Instant::now();
        let process = self.process.take().context("not running")?;
        let status = process.kill().await?;
        Ok((status, killed.elapsed()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The process is SIGKILLed as it is dropped (after this); resume it first.
        if self.paused {
            let _ = self.resume();
        }
    }
}

/// `GET /metrics` of a node; bounded.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let scrape = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    tokio::time::timeout(SCRAPE_LIMIT, scrape)
        .await
        .with_context(|| format!("no metrics from {addr} within {SCRAPE_LIMIT:?}"))?
}

/// The value of sample `name` (no labels) in a scrape.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------
// The load.

/// Where a session of the load stands, for the wait between rounds.
#[derive(Clone, Debug, Default)]
struct Status {
    /// When its last acknowledged call was sent.
    acked_sent: Option<Instant>,
    /// Its calls that failed since the last acknowledged one.
    failing: usize,
    /// The last of them: when it was sent, and what went wrong.
    last_error: Option<(Instant, String)>,
}

/// Every session's [`Status`], by index.
type Board = Arc<Mutex<Vec<Status>>>;

/// One session of the load and everything it saw.
struct Session {
    index: usize,
    id: ClientId,
    cart: ThinCart,
    next: usize,
    /// Every item it sent, acknowledged or not.
    sent: HashSet<String>,
    /// Acknowledged items and the version each was acknowledged at, in order.
    acked: Vec<(String, u64)>,
    /// The highest acknowledged version.
    max_version: u64,
    /// Every item some reply held, and which reply first held it: a later reply must
    /// hold it too.
    seen: BTreeMap<String, String>,
    /// Failed calls: item and what went wrong.
    failed: Vec<(String, String)>,
    /// What contradicts the guarantees, as it was seen.
    violations: Vec<String>,
    calls: usize,
    /// Every call, one line each: when it was sent, and how it ended.
    history: Vec<String>,
    /// Items reported missing from a reply already.
    reported: HashSet<String>,
    /// How to name nodes and times in what it reports.
    names: Names,
}

/// Node names by client address, and the test's start: to describe tokens and times.
#[derive(Clone)]
struct Names {
    nodes: Arc<BTreeMap<SocketAddr, String>>,
    t0: Instant,
}

impl Names {
    fn node(&self, addr: SocketAddr) -> String {
        self.nodes
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// A token, short: version, then the primary and the secondaries that hold it.
    fn token(&self, token: &RoutingToken) -> String {
        let secondaries: Vec<String> = token
            .secondaries
            .iter()
            .map(|node| self.node(*node))
            .collect();
        format!(
            "version {} on {} + [{}]",
            token.version,
            self.node(token.primary),
            secondaries.join(", ")
        )
    }

    /// `at` as the timeline shows it.
    fn at(&self, at: Instant) -> String {
        format!(
            "t={:.2}s",
            at.saturating_duration_since(self.t0).as_secs_f64()
        )
    }
}

impl Session {
    /// Records the acknowledged `add` of `item`, and checks the reply against what came
    /// before.
    fn acknowledge(
        &mut self,
        item: &str,
        view: &CartView,
        token: Option<RoutingToken>,
        replicas: usize,
    ) {
        let index = self.index;
        let Some(token) = token else {
            self.violations.push(format!(
                "session {index}: the add of {item} was acknowledged with no routing token"
            ));
            return;
        };
        let version = token.version;
        let by = &view.served_by;
        if version <= self.max_version {
            self.violations.push(format!(
                "session {index}: {item} was acknowledged by {by} at version {version}, not above \
                 version {} acknowledged before: the session went backwards",
                self.max_version
            ));
        }
        let secondaries: HashSet<SocketAddr> = token
            .secondaries
            .iter()
            .copied()
            .filter(|node| *node != token.primary)
            .collect();
        if secondaries.len() < replicas {
            self.violations.push(format!(
                "session {index}: {item} was acknowledged by {by} with {} copies on other nodes, \
                 {replicas} required (token {token:?})",
                secondaries.len()
            ));
        }
        if !view.items.contains_key(item) {
            self.violations.push(format!(
                "session {index}: the reply to the add of {item} (by {by}, version {version}) \
                 lacks {item}"
            ));
        }
        let missing = self.missing_from(view);
        if !missing.is_empty() {
            self.violations.push(format!(
                "session {index}: the reply to the add of {item} (by {by}, version {version}, \
                 token {}) lacks {} item(s) an earlier reply held: the session went backwards; {}",
                self.names.token(&token),
                missing.len(),
                self.explain(&missing)
            ));
        }
        self.saw(
            view,
            &format!(
                "the reply to the add of {item} (by {by}, token {})",
                self.names.token(&token)
            ),
        );
        self.max_version = self.max_version.max(version);
        self.acked.push((item.to_owned(), version));
    }
}

impl Session {
    /// The items an earlier reply held that `view` lacks, but for those reported missing
    /// already (each is reported once, where it went missing first).
    fn missing_from(&mut self, view: &CartView) -> Vec<String> {
        let missing: Vec<String> = self
            .seen
            .keys()
            .filter(|item| !view.items.contains_key(*item) && !self.reported.contains(*item))
            .cloned()
            .collect();
        self.reported.extend(missing.iter().cloned());
        missing
    }

    /// Notes the items of `view`, a reply described by `what`.
    fn saw(&mut self, view: &CartView, what: &str) {
        for item in view.items.keys() {
            self.seen
                .entry(item.clone())
                .or_insert_with(|| what.to_owned());
        }
    }

    /// For each of (up to 5 of) `items`: whether its add was acknowledged, and which reply
    /// first held it.
    fn explain(&self, items: &[String]) -> String {
        let explained: Vec<String> = items
            .iter()
            .take(5)
            .map(|item| {
                let add = match self.acked.iter().find(|(acked, _)| acked == item) {
                    Some((_, version)) => format!("acknowledged at version {version}"),
                    None => match self.failed.iter().find(|(failed, _)| failed == item) {
                        Some((_, error)) => format!("not acknowledged: {error}"),
                        None => "not acknowledged".into(),
                    },
                };
                let first = self.seen.get(item).map_or("no reply", String::as_str);
                // The calls around its own.
                let call = format!(" {item}: ");
                let around = match self.history.iter().position(|line| line.contains(&call)) {
                    Some(at) => {
                        let from = at.saturating_sub(3);
                        let to = (at + 4).min(self.history.len());
                        format!(
                            "; the calls around it:\n      {}",
                            self.history[from..to].join("\n      ")
                        )
                    }
                    None => String::new(),
                };
                format!("{item}: its add {add}; first held by {first}{around}")
            })
            .collect();
        explained.join("; ")
    }
}

/// What a failed call was: the refusal's code or the error's kind, and the retry advice.
fn error_kind(error: RpcError) -> String {
    let error = CallError::from(error);
    let advice = error.retry_advice();
    let what = match (&error, error.refusal()) {
        (_, Some(kind)) => format!("refused, {}", kind.code()),
        (CallError::Rpc(RpcError::Shutdown), _) => "connection shut down".into(),
        (CallError::Rpc(RpcError::Send(_)), _) => "could not send".into(),
        (CallError::Rpc(RpcError::Channel(error)), _) => format!("channel error: {error}"),
        (CallError::Rpc(RpcError::DeadlineExceeded), _) => "deadline exceeded".into(),
        (CallError::Rpc(RpcError::Server(_)), _) => "server error".into(),
        (error, _) => format!("other: {error}"),
    };
    format!("{what} (retry advice: {advice:?})")
}

/// Counts of the whole load, for the per-round lines.
#[derive(Default)]
struct Tally {
    acked: AtomicUsize,
    failed: AtomicUsize,
}

/// What a session's driver needs besides the session.
#[derive(Clone)]
struct Load {
    channel: ClusterChannel,
    service: ServiceId,
    pace: Duration,
    replicas: usize,
    stop: watch::Receiver<bool>,
    board: Board,
    tally: Arc<Tally>,
}

/// Runs `session` from `start`, one `add` at a time, one every `pace`, until told to stop.
async fn drive(mut session: Session, load: Load, start: Instant) -> Session {
    let mut stop = load.stop.clone();
    let mut ticker = tokio::time::interval_at(start.into(), load.pace);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = ticker.tick() => {}
        }
        let item = format!("s{}-u{}", session.index, session.next);
        session.next += 1;
        session.sent.insert(item.clone());
        session.calls += 1;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            CALL_LIMIT,
            session.cart.add(context::current(), item.clone(), 1),
        )
        .await;
        let failure = match answer {
            Ok(Ok(Ok(view))) => {
                let token = load.channel.token(session.id, &load.service);
                let held = token
                    .as_ref()
                    .map_or("no token".into(), |token| session.names.token(token));
                session.history.push(format!(
                    "{} {item}: acknowledged by {}, {held}",
                    session.names.at(started),
                    view.served_by
                ));
                session.acknowledge(&item, &view, token, load.replicas);
                lock(&load.board)[session.index] = Status {
                    acked_sent: Some(started),
                    failing: 0,
                    last_error: None,
                };
                load.tally.acked.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(Err(error))) => format!("the cart refused: {error}"),
            Ok(Err(error)) => error_kind(error),
            Err(_) => format!("no answer within {CALL_LIMIT:?} (the test's bound)"),
        };
        load.tally.failed.fetch_add(1, Ordering::Relaxed);
        {
            let mut board = lock(&load.board);
            let status = &mut board[session.index];
            status.failing += 1;
            status.last_error = Some((started, failure.clone()));
        }
        session.history.push(format!(
            "{} {item}: failed after {} ms: {failure}",
            session.names.at(started),
            started.elapsed().as_millis()
        ));
        session.failed.push((item, failure));
    }
    session
}

// ---------------------------------------------------------------------------------------
// The run.

/// The test's clock and narration.
struct Timeline(Instant);

impl Timeline {
    fn say(&self, text: impl std::fmt::Display) {
        println!("t={:6.2}s {text}", self.0.elapsed().as_secs_f64());
    }
}

/// How the cluster recovered: when, and the sessions that took longest (more than
/// [`STRAGGLER_AFTER`]), each with its status then.
struct Recovery {
    took: Duration,
    /// When every node last came to see all of them as members.
    members: Duration,
    /// When the last session had an update acknowledged.
    sessions: Duration,
    stragglers: Vec<(usize, Status)>,
}

/// A session still without an acknowledged update this long after the faults healed is
/// named in the round's line.
const STRAGGLER_AFTER: Duration = Duration::from_secs(2);

/// Waits (bounded by `limit`) until every node sees all of them as members and, with
/// `since`, every session had a call acknowledged that was sent at or after `since`.
async fn settle(
    nodes: &[Node],
    board: Option<(&Board, Instant)>,
    limit: Duration,
) -> anyhow::Result<Recovery> {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(SETTLE_POLL);
    let mut stragglers = Vec::new();
    let (mut members_at, mut sessions_at) = (None, None);
    loop {
        ticker.tick().await;
        let mut members = Vec::with_capacity(nodes.len());
        for node in nodes {
            let count = match scrape(node.ports.metrics).await {
                Ok(text) => sample(&text, "scone_cluster_members"),
                Err(_) => None,
            };
            members.push(count);
        }
        let converged = members
            .iter()
            .all(|count| *count == Some(nodes.len() as u64));
        let behind: Vec<(usize, Status)> = match board {
            None => Vec::new(),
            Some((board, since)) => lock(board)
                .iter()
                .enumerate()
                .filter(|(_, status)| !matches!(status.acked_sent, Some(sent) if sent >= since))
                .map(|(index, status)| (index, status.clone()))
                .collect(),
        };
        let now = started.elapsed();
        if !behind.is_empty() && now > STRAGGLER_AFTER {
            stragglers.clone_from(&behind);
        }
        members_at = if converged {
            members_at.or(Some(now))
        } else {
            None
        };
        sessions_at = if behind.is_empty() {
            sessions_at.or(Some(now))
        } else {
            None
        };
        if let (Some(members), Some(sessions)) = (members_at, sessions_at) {
            return Ok(Recovery {
                took: now,
                members,
                sessions,
                stragglers,
            });
        }
        if started.elapsed() > limit {
            let members: Vec<String> = nodes
                .iter()
                .zip(&members)
                .map(|(node, count)| match count {
                    Some(count) => format!("{} sees {count}", node.name()),
                    None => format!("{} did not answer", node.name()),
                })
                .collect();
            let since = board.map_or(started, |(_, since)| since);
            let behind: Vec<String> = behind.iter().map(|b| straggler(b, since)).collect();
            bail!(
                "the cluster did not recover within {limit:?}: members: {}; {} session(s) had no \
                 update acknowledged since the faults healed: {:#?}",
                members.join(", "),
                behind.len(),
                &behind[..behind.len().min(8)]
            );
        }
    }
}

/// A session slow to recover, as the round's line shows it.
fn straggler((index, status): &(usize, Status), since: Instant) -> String {
    let last = match &status.last_error {
        Some((sent, error)) if *sent >= since => format!(
            ", the last sent {} ms after the faults healed: {error}",
            (*sent - since).as_millis()
        ),
        Some((_, error)) => format!(", the last sent before the faults healed: {error}"),
        None => String::new(),
    };
    format!(
        "session {index}: {} call(s) failed in a row{last}",
        status.failing
    )
}

/// What the checker found, and the whole run's counts.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("   ok: {name}");
        } else {
            println!("   FAILED: {name}: {detail}");
            self.failures.push(format!("{name}: {detail}"));
        }
    }
}

/// A read of `session`'s cart, tried up to [`CHECK_ATTEMPTS`] times; failures are
/// counted in `errors`.
async fn read(session: &Session, errors: &mut BTreeMap<String, usize>) -> anyhow::Result<CartView> {
    for _ in 0..CHECK_ATTEMPTS {
        let error =
            match tokio::time::timeout(CALL_LIMIT, session.cart.view(context::current())).await {
                Ok(Ok(Ok(view))) => return Ok(view),
                Ok(Ok(Err(error))) => format!("the cart refused: {error}"),
                Ok(Err(error)) => error_kind(error),
                Err(_) => format!("no answer within {CALL_LIMIT:?}"),
            };
        *errors.entry(format!("view: {error}")).or_default() += 1;
        // Pacing between tries.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "session {}: no read succeeded in {CHECK_ATTEMPTS} tries",
        session.index
    )
}

async fn run(
    profile: &Profile,
    seed: u64,
    binary: &Path,
    logs: &[SharedLog],
    timeline: &Timeline,
) -> anyhow::Result<Report> {
    let rounds = schedule(profile, seed);
    for (number, round) in rounds.iter().enumerate() {
        let faults: Vec<String> = round
            .faults
            .iter()
            .map(|fault| format!("{} at +{} ms", describe(fault), fault.at.as_millis()))
            .collect();
        println!(
            "   round {}: {} ms of load, then {}",
            number + 1,
            round.load_before.as_millis(),
            faults.join(", ")
        );
    }

    let dir = procs::TempDir::new("jepsen")?;
    let (_key, key_file) = procs::signing_key(&dir)?;
    // The ports come from the seed too (a replay runs on the same ones, if free).
    let mut port_rng = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
    let ports = free_ports(4 * profile.nodes, &mut port_rng)?;
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let all_ports: Vec<Ports> = ports
        .chunks(4)
        .map(|p| Ports {
            rpc: addr(p[0]),
            peer: addr(p[1]),
            gossip: addr(p[2]),
            metrics: addr(p[3]),
        })
        .collect();
    let mut nodes: Vec<Node> = Vec::with_capacity(profile.nodes);
    for (index, ports) in all_ports.iter().enumerate() {
        let number = index + 1;
        let mut args: Vec<String> = [
            "--key".into(),
            key_file.display().to_string(),
            "--placement".into(),
            "cluster".into(),
            "--name".into(),
            format!("node-{number}"),
            "--listen".into(),
            ports.rpc.to_string(),
            "--peer-listen".into(),
            ports.peer.to_string(),
            "--gossip".into(),
            ports.gossip.to_string(),
            "--metrics".into(),
            ports.metrics.to_string(),
            "--replicas".into(),
            profile.replicas.to_string(),
        ]
        .into();
        // Every other node's gossip is a seed: a node restarted joins through any.
        for (other, other_ports) in all_ports.iter().enumerate() {
            if other != index {
                args.extend(["--seed".into(), other_ports.gossip.to_string()]);
            }
        }
        nodes.push(Node {
            number,
            ports: *ports,
            args,
            process: None,
            paused: false,
            incarnations: 0,
            log: Arc::clone(&logs[index]),
        });
    }
    for node in &mut nodes {
        node.start(binary).await?;
        timeline.say(format_args!(
            "{} up (pid {}): clients {}, peers {}, gossip {}, metrics {}",
            node.name(),
            node.pid(),
            node.ports.rpc,
            node.ports.peer,
            node.ports.gossip,
            node.ports.metrics
        ));
    }
    let recovery = settle(&nodes, None, SETTLE_LIMIT).await?;
    timeline.say(format_args!(
        "membership converged ({} ms): every node sees {}",
        recovery.took.as_millis(),
        nodes.len()
    ));

    // The load.
    let names = Names {
        nodes: Arc::new(
            nodes
                .iter()
                .map(|node| (node.ports.rpc, node.name()))
                .collect(),
        ),
        t0: timeline.0,
    };
    let service = examples::cart::service_id()?;
    let seeds: Vec<SocketAddr> = nodes.iter().map(|node| node.ports.rpc).collect();
    let config = ClusterClientConfig {
        attempt_timeout: profile.attempt_timeout,
    };
    let channel = ClusterChannel::new(seeds, config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let board: Board = Arc::new(Mutex::new(vec![Status::default(); profile.sessions]));
    let tally = Arc::new(Tally::default());
    let load = Load {
        channel: channel.clone(),
        service: service.clone(),
        pace: profile.pace,
        replicas: profile.replicas,
        stop: stop_rx,
        board: Arc::clone(&board),
        tally: Arc::clone(&tally),
    };
    let load_started = Instant::now();
    let mut tasks = Vec::with_capacity(profile.sessions);
    let mut ids = Vec::with_capacity(profile.sessions);
    for index in 0..profile.sessions {
        let id = ClientId::random()?;
        ids.push(id);
        let cart = CartClient::from(
            SconeClient::thin_for::<CartState>(channel.clone())?.with_client_id(id),
        );
        let session = Session {
            index,
            id,
            cart,
            next: 0,
            sent: HashSet::new(),
            acked: Vec::new(),
            max_version: 0,
            seen: BTreeMap::new(),
            failed: Vec::new(),
            violations: Vec::new(),
            calls: 0,
            history: Vec::new(),
            reported: HashSet::new(),
            names: names.clone(),
        };
        // Spread over the pace, not all at once.
        let start = load_started + profile.pace.mul_f64(index as f64 / profile.sessions as f64);
        tasks.push(tokio::spawn(drive(session, load.clone(), start)));
    }
    timeline.say(format_args!(
        "load: {} sessions on one ClusterChannel, one add each every {} ms",
        profile.sessions,
        profile.pace.as_millis()
    ));
    let recovery = settle(&nodes, Some((&board, load_started)), SETTLE_LIMIT).await?;
    timeline.say(format_args!(
        "every session acknowledged ({} ms)",
        recovery.took.as_millis()
    ));

    // The rounds.
    let total = rounds.len();
    let mut not_recovered = None;
    for (number, round) in rounds.iter().enumerate() {
        let number = number + 1;
        let (acked_before, failed_before) = (
            tally.acked.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        // The schedule's pacing, not a wait for anything.
        tokio::time::sleep(round.load_before).await;
        let faults: Vec<String> = round.faults.iter().map(describe).collect();
        timeline.say(format_args!(
            "round {number}/{total}: {}",
            faults.join(", ")
        ));
        // Each fault's actions, at their times from the round's start.
        let mut events: Vec<(Duration, Action, usize)> = Vec::new();
        for (index, fault) in round.faults.iter().enumerate() {
            events.extend(
                fault
                    .actions()
                    .into_iter()
                    .map(|(at, action)| (at, action, index)),
            );
        }
        events.sort();
        // The node each fault hits, once it started; and its actions still to come.
        let mut hit: Vec<Option<usize>> = round.faults.iter().map(|fault| fault.node).collect();
        let mut left: Vec<usize> = (0..round.faults.len())
            .map(|index| events.iter().filter(|(_, _, i)| *i == index).count())
            .collect();
        let round_started = Instant::now();
        for (at, action, index) in events {
            tokio::time::sleep_until((round_started + at).into()).await;
            let target = match hit[index] {
                Some(target) => target,
                None => {
                    let spared: Vec<usize> = hit.iter().flatten().copied().collect();
                    let (target, count) =
                        busiest_primary(&nodes, &channel, &service, &ids, &spared);
                    timeline.say(format_args!(
                        "  the busiest primary: node-{} ({count} sessions)",
                        target + 1
                    ));
                    hit[index] = Some(target);
                    target
                }
            };
            left[index] -= 1;
            let slow = matches!(round.faults[index].kind, FaultKind::Slow { .. });
            let node = &mut nodes[target];
            match action {
                Action::Kill => {
                    let pid = node.pid();
                    let (status, reaped) = node.kill().await?;
                    timeline.say(format_args!(
                        "  {} killed (pid {pid}, {status}; reaped {} ms after the signal)",
                        node.name(),
                        reaped.as_millis()
                    ));
                }
                Action::Restart => {
                    node.start(binary).await?;
                    timeline.say(format_args!(
                        "  {} restarted (pid {}), empty, on the same ports",
                        node.name(),
                        node.pid()
                    ));
                }
                Action::Stop => {
                    node.pause()?;
                    if !slow {
                        timeline.say(format_args!("  {} paused (SIGSTOP)", node.name()));
                    } else if at == round.faults[index].at {
                        timeline.say(format_args!(
                            "  {} slowed: SIGSTOP, SIGCONT, again and again",
                            node.name()
                        ));
                    }
                }
                Action::Continue => {
                    node.resume()?;
                    if !slow {
                        timeline.say(format_args!("  {} resumed (SIGCONT)", node.name()));
                    } else if left[index] == 0 {
                        timeline.say(format_args!("  {} runs at full speed again", node.name()));
                    }
                }
            }
        }
        let healed = Instant::now();
        let recovery = match settle(&nodes, Some((&board, healed)), SETTLE_LIMIT).await {
            Ok(recovery) => recovery,
            Err(error) => {
                // No more faults: the checker says what the cluster still holds.
                timeline.say(format_args!("  round {number}: {error:#}"));
                not_recovered = Some(format!("round {number}: {error:#}"));
                break;
            }
        };
        timeline.say(format_args!(
            "  recovered {} ms after the faults healed (membership {} ms, sessions {} ms); \
             this round: {} acknowledged, {} failed",
            recovery.took.as_millis(),
            recovery.members.as_millis(),
            recovery.sessions.as_millis(),
            tally.acked.load(Ordering::Relaxed) - acked_before,
            tally.failed.load(Ordering::Relaxed) - failed_before
        ));
        for straggler in recovery.stragglers.iter().map(|s| straggler(s, healed)) {
            println!("     slow to recover: {straggler}");
        }
    }

    // Stop the load; every call is bounded.
    let _ = stop_tx.send(true);
    let mut sessions = Vec::with_capacity(tasks.len());
    for task in tasks {
        let session = tokio::time::timeout(CALL_LIMIT + procs::LIMIT, task)
            .await
            .context("the load did not stop in time")??;
        sessions.push(session);
    }
    let calls: usize = sessions.iter().map(|s| s.calls).sum();
    let acknowledged: usize = sessions.iter().map(|s| s.acked.len()).sum();
    timeline.say(format_args!(
        "load stopped after {:.1} s: {calls} calls, {acknowledged} acknowledged, {} failed",
        load_started.elapsed().as_secs_f64(),
        calls - acknowledged
    ));
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for session in &sessions {
        for (_, error) in &session.failed {
            *errors.entry(error.clone()).or_default() += 1;
        }
    }
    for (error, count) in &errors {
        println!("     {count} x {error}");
    }

    // The checker.
    timeline.say("checker: every session read twice, then one more add");
    let mut report = Report::default();
    report.check(
        "the cluster recovered after every round",
        not_recovered.is_none(),
        not_recovered.unwrap_or_default(),
    );
    // What the checker finds; the sessions' own (the load's, and the checker's add) join
    // them at the end.
    let mut violations: Vec<String> = Vec::new();
    let (mut lost, mut duplicates, mut failed_in_cart) = (0, 0, 0);
    let mut lost_examples = Vec::new();
    let mut strangers = Vec::new();
    let mut unreadable = Vec::new();
    let mut lost_unreadable = 0;
    let mut check_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut served_by: BTreeMap<String, usize> = BTreeMap::new();
    for session in &mut sessions {
        let index = session.index;
        let first = match read(session, &mut check_errors).await {
            Ok(view) => view,
            Err(error) => {
                // No node gave the session back: its updates count as lost (the read's
                // errors above say whether the nodes answered `session-unavailable`).
                unreadable.push(format!("{error:#}"));
                lost_unreadable += session.acked.len();
                continue;
            }
        };
        *served_by.entry(first.served_by.clone()).or_default() += 1;
        for (item, version) in &session.acked {
            match first.items.get(item) {
                None => {
                    lost += 1;
                    if lost_examples.len() < 10 {
                        lost_examples.push(format!(
                            "session {index}: {item} (acknowledged at version {version}; the \
                             read was served by {})",
                            first.served_by
                        ));
                    }
                }
                Some(&quantity) if quantity > 1 => duplicates += 1,
                Some(_) => {}
            }
        }
        session.history.push(format!(
            "{} the checker's first read: by {}, {} items",
            session.names.at(Instant::now()),
            first.served_by,
            first.items.len()
        ));
        let token_before = channel.token(session.id, &service);
        let token_text = token_before
            .as_ref()
            .map_or("none".into(), |token| session.names.token(token));
        let missing = session.missing_from(&first);
        if !missing.is_empty() {
            violations.push(format!(
                "session {index}: the checker's first read (by {}, token {token_text}) lacks {} \
                 item(s) an earlier reply held; {}",
                first.served_by,
                missing.len(),
                session.explain(&missing)
            ));
        }
        session.saw(
            &first,
            &format!(
                "the checker's first read (by {}, token {token_text})",
                first.served_by
            ),
        );
        strangers.extend(
            first
                .items
                .keys()
                .filter(|item| !session.sent.contains(*item))
                .map(|item| format!("session {index}: {item}")),
        );
        failed_in_cart += session
            .failed
            .iter()
            .filter(|(item, _)| first.items.contains_key(item))
            .count();
        match channel.token(session.id, &service) {
            Some(token) if token.version >= session.max_version => {}
            token => violations.push(format!(
                "session {index}: after the read, the token names version {:?}, below the \
                 acknowledged {}",
                token.map(|t| t.version),
                session.max_version
            )),
        }

        // A second read never goes backwards from the first.
        let second = match read(session, &mut check_errors).await {
            Ok(view) => view,
            Err(error) => {
                unreadable.push(format!("{error:#}"));
                continue;
            }
        };
        session.history.push(format!(
            "{} the checker's second read: by {}, {} items",
            session.names.at(Instant::now()),
            second.served_by,
            second.items.len()
        ));
        let missing = session.missing_from(&second);
        if !missing.is_empty() {
            violations.push(format!(
                "session {index}: the checker's second read (by {}, token {token_text}) lacks {} \
                 item(s) an earlier reply held; {}",
                second.served_by,
                missing.len(),
                session.explain(&missing)
            ));
        }
        session.saw(
            &second,
            &format!(
                "the checker's second read (by {}, token {token_text})",
                second.served_by
            ),
        );

        // One more add: its version must be above every version acknowledged before.
        let item = format!("s{index}-check");
        session.sent.insert(item.clone());
        let mut checked = false;
        for _ in 0..CHECK_ATTEMPTS {
            let error = match tokio::time::timeout(
                CALL_LIMIT,
                session.cart.add(context::current(), item.clone(), 1),
            )
            .await
            {
                Ok(Ok(Ok(view))) => {
                    let token = channel.token(session.id, &service);
                    let held = token
                        .as_ref()
                        .map_or("no token".into(), |token| session.names.token(token));
                    session.history.push(format!(
                        "{} {item}: acknowledged by {}, {held}",
                        session.names.at(Instant::now()),
                        view.served_by
                    ));
                    session.acknowledge(&item, &view, token, profile.replicas);
                    checked = true;
                    break;
                }
                Ok(Ok(Err(error))) => format!("the cart refused: {error}"),
                Ok(Err(error)) => error_kind(error),
                Err(_) => format!("no answer within {CALL_LIMIT:?}"),
            };
            *check_errors.entry(format!("add: {error}")).or_default() += 1;
            // Pacing between tries.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !checked {
            unreadable.push(format!(
                "session {index}: the checker's add failed {CHECK_ATTEMPTS} times"
            ));
        }
    }
    violations.extend(sessions.iter().flat_map(|s| s.violations.iter().cloned()));

    let served: Vec<String> = served_by
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "   {} sessions read, served by {}",
        sessions.len(),
        served.join(", ")
    );
    println!(
        "   {acknowledged} acknowledged items: {} lost, {duplicates} added twice (a call run \
         again after a failover: at least once), {failed_in_cart} of {} failed calls' items in \
         the cart all the same",
        lost + lost_unreadable,
        calls - acknowledged
    );
    for (error, count) in &check_errors {
        println!("     checker: {count} x {error}");
    }
    // The nodes' own counts, as their last incarnation saw them.
    for node in &nodes {
        if let Ok(text) = scrape(node.ports.metrics).await {
            let get = |name: &str| sample(&text, &format!("scone_cluster_{name}")).unwrap_or(0);
            println!(
                "   {} (incarnation {}): holds {} sessions; commits {}, takeovers {}, superseded \
                 {}, not-replicated {}, unavailable {}, busy {}",
                node.name(),
                node.incarnations,
                get("sessions"),
                get("commits_total"),
                get("takeovers_total"),
                get("superseded_total"),
                get("not_replicated_total"),
                get("unavailable_total"),
                get("busy_total"),
            );
        }
    }
    report.check(
        "every session could be read and written after the faults",
        unreadable.is_empty(),
        format!("{} not: {:?}", unreadable.len(), unreadable),
    );
    report.check(
        "every acknowledged update is in its session (lost = 0)",
        lost == 0 && lost_unreadable == 0,
        format!(
            "{lost} lost from sessions read back, e.g. {lost_examples:?}; {lost_unreadable} in \
             sessions no read got back"
        ),
    );
    report.check(
        "no session went backwards: versions only went up, and every reply and read held \
         every item an earlier one did",
        violations.is_empty(),
        format!(
            "{} violation(s):\n  - {}",
            violations.len(),
            violations[..violations.len().min(20)].join("\n  - ")
        ),
    );
    report.check(
        "every cart holds only items its session sent",
        strangers.is_empty(),
        format!(
            "{} others, e.g. {:?}",
            strangers.len(),
            &strangers[..strangers.len().min(10)]
        ),
    );

    for node in &mut nodes {
        if node.process.is_some() {
            node.kill().await?;
        }
    }
    Ok(report)
}

/// The `cart-server` example: `JEPSEN_CART_SERVER`, or built with the cargo that runs
/// the test.
fn cart_server() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("JEPSEN_CART_SERVER") {
        return Ok(path.into());
    }
    let binaries = procs::build_for_test(&[Binary::example("examples", "cart-server")])?;
    Ok(binaries[0].clone())
}

#[test]
fn acknowledged_updates_survive_random_kills_and_pauses() {
    let profile = Profile::from_env().expect("JEPSEN_PROFILE / JEPSEN_ROUNDS");
    let seed = seed().expect("JEPSEN_SEED");
    let _seed_on_panic = SeedOnPanic(format!("seed={seed}; replay: {}", replay(seed, &profile)));
    println!(
        "jepsen: seed={seed} profile={}: {} nodes, k = {}, {} rounds of up to {} fault(s) at \
         once, {} sessions, attempt timeout {} ms",
        profile.name,
        profile.nodes,
        profile.replicas,
        profile.rounds,
        profile.max_faults,
        profile.sessions,
        profile.attempt_timeout.as_millis()
    );
    println!(
        "   replay: {} (the same schedule; timing differs)",
        replay(seed, &profile)
    );
    let built = Instant::now();
    let binary = cart_server().expect("building cart-server");
    println!(
        "   cart-server: {} (built or found in {:.1} s)",
        binary.display(),
        built.elapsed().as_secs_f64()
    );
    let logs: Vec<SharedLog> = (0..profile.nodes).map(|_| SharedLog::default()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let timeline = Timeline(Instant::now());
    let outcome = runtime.block_on(async {
        tokio::time::timeout(
            profile.budget,
            run(&profile, seed, &binary, &logs, &timeline),
        )
        .await
    });
    // Every node process is gone by now (killed at the end, or when dropped).
    drop(runtime);
    let failures = match outcome {
        Ok(Ok(report)) => report.failures,
        Ok(Err(error)) => vec![format!("the run stopped: {error:#}")],
        Err(_) => vec![format!("the run took more than {:?}", profile.budget)],
    };
    if failures.is_empty() {
        println!(
            "jepsen: seed={seed} profile={}: ok, {:.1} s",
            profile.name,
            timeline.0.elapsed().as_secs_f64()
        );
        return;
    }
    for (index, log) in logs.iter().enumerate() {
        let log = lock(log);
        println!(
            "--- node-{}: its last {} of {} lines on standard error",
            index + 1,
            log.lines.len().min(LOG_SHOW),
            log.total
        );
        let skip = log.lines.len().saturating_sub(LOG_SHOW);
        for line in log.lines.iter().skip(skip) {
            println!("{line}");
        }
    }
    panic!(
        "jepsen: seed={seed} profile={}: {} failure(s):\n  {}\nreplay: {}",
        profile.name,
        failures.len(),
        failures.join("\n  "),
        replay(seed, &profile)
    );
}
