//! The failover demo: a cluster of cart servers loses a node under load, and no
//! acknowledged update is lost.
//!
//! ```sh
//! cargo run --example failover
//! FAILOVER_SECS=8 cargo run --example failover   # a longer load (default 4 s)
//! ```
//!
//! It builds `cart-server` and runs three of them as processes on 127.0.0.1, in a
//! cluster (`--placement cluster`): each new cart is copied to one other node before the
//! reply, and the reply carries a routing token (the primary that served it, the
//! secondary that holds the copy) instead of the cart. Membership comes from gossip.
//! The demo plays the clients: 64 thin cart sessions on one `ClusterChannel`, each
//! adding a new item every few milliseconds. Partway through, it kills the node that is
//! primary for the most sessions with SIGKILL (a crash: its memory is gone), keeps the
//! load going, and at the end reads every cart back from the cluster and checks that
//! every item whose `add` was acknowledged is there.
//!
//! It reports the updates acknowledged, the updates lost (it must be 0), the time from
//! the kill to the first call of a dead node's session that a survivor answered (the
//! client's failover), and when each survivor's membership declared the dead node
//! (read from the nodes' failure-detector log). Its last line is exactly
//! `acknowledged=N lost=L failover_ms=M` (`M` is -1 if no such call succeeded). It
//! exits 0 when every check passed, and 1 otherwise (always when `L > 0`). Every process
//! it started is killed when it ends, either way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use examples::cart::{CartClient, CartRequest, CartResponse, CartState};
use examples::procs::{self, bounded, step, Binary, Options, Process, TempDir, LIMIT};
use scone::{ClientId, ServiceId};
use scone_cluster::{ClusterChannel, ClusterClientConfig};
use scone_rpc::{CallError, RefusalKind, SconeClient};
use tarpc::context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStderr;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Cart sessions in the load, each its own client ID.
const SESSIONS: usize = 64;
/// Each session sends its next `add` this long after the last one was sent (or when the
/// last one returns, if that is later), unless `FAILOVER_PACE_MS` says otherwise. 64
/// sessions at 500 ms make about 128 calls/s: three debug-built nodes and the demo take
/// about 200/s on two cores. Past that, calls queue, some exceed the channel's attempt
/// timeout and are sent to another node while the first still runs: more refusals and
/// duplicates, still no loss.
const DEFAULT_PACE: Duration = Duration::from_millis(500);
/// When the primary is killed, from the start of the load.
const KILL_AFTER: Duration = Duration::from_millis(1500);
/// The load's length unless `FAILOVER_SECS` says otherwise.
const DEFAULT_SECS: f64 = 4.0;
/// Bound of one call of the load (the channel's own attempts are bounded by 500 ms
/// each; this only catches a call that hangs).
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// The target for the client's failover, with default settings.
const FAILOVER_TARGET: Duration = Duration::from_secs(1);
/// The target for the survivors' membership to declare the dead node.
const DECLARED_TARGET: Duration = Duration::from_secs(3);
/// What the nodes log: warnings, and the failure detector's liveness verdicts (chitchat
/// logs one per node and gossip round, at debug), from which the demo sees when a
/// survivor declares the dead node.
const NODE_LOG: &str = "warn,chitchat::failure_detector=debug";

/// A thin cart client on the cluster: it sends its client ID and the channel keeps the
/// session's routing token; no SCONE on this side.
type ThinCart = CartClient<SconeClient<CartRequest, CartResponse, ClusterChannel>>;

/// One `cart-server --placement cluster` process and the addresses it printed.
struct Node {
    /// 1, 2 or 3.
    number: usize,
    /// `node-` and its number: what it puts in its replies (`--name`).
    name: String,
    process: Process,
    /// Where clients call it; what routing tokens name.
    rpc: SocketAddr,
    /// Where its gossip runs.
    gossip: SocketAddr,
}

impl Node {
    /// Starts node number `number`, joining through `seed`'s gossip if given; its
    /// standard error goes to [`watch_log`].
    async fn start(
        number: usize,
        binary: &Path,
        key_file: &Path,
        seed: Option<SocketAddr>,
        log: &Arc<watch::Sender<Log>>,
    ) -> anyhow::Result<Self> {
        let name = format!("node-{number}");
        let mut args: Vec<String> = [
            "--key",
            &key_file.display().to_string(),
            "--placement",
            "cluster",
            "--name",
            &name,
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--gossip",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .into();
        if let Some(seed) = seed {
            args.extend(["--seed".into(), seed.to_string()]);
        }
        let options = Options {
            rust_log: NODE_LOG.into(),
            capture_stderr: true,
        };
        // It prints its client address, `peers on ADDR`, then `gossip on ADDR`.
        let (mut process, lines) = Process::start_with(&name, binary, &args, &options, |l| {
            l.starts_with("gossip on ")
        })
        .await?;
        let find = |prefix: &str| -> anyhow::Result<SocketAddr> {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix)?.parse().ok())
                .with_context(|| format!("{name} printed no {prefix:?} line: {lines:?}"))
        };
        let rpc = lines[0]
            .parse()
            .with_context(|| format!("{name} printed {:?} first", lines[0]))?;
        let peer = find("peers on ")?;
        let gossip = find("gossip on ")?;
        let stderr = process.take_stderr().context("the node's standard error")?;
        tokio::spawn(watch_log(number, stderr, Arc::clone(log)));
        println!(
            "   {name} (pid {}): clients on {rpc}, peers on {peer}, gossip on {gossip}{}",
            process.pid(),
            seed.map(|s| format!(", joined through {s}"))
                .unwrap_or_default(),
        );
        Ok(Self {
            number,
            name,
            process,
            rpc,
            gossip,
        })
    }
}

/// What the nodes' standard error said, as far as the demo reads it.
#[derive(Default)]
struct Log {
    /// Each change of a node's verdict on another, in the order read.
    verdicts: Vec<Verdict>,
    /// The last verdict of each (node, other node's ID).
    last: HashMap<(usize, String), bool>,
    /// Warnings and errors, counted by node and message.
    warnings: BTreeMap<(usize, String), usize>,
}

/// Node `by` now holds node `about` (chitchat's node ID: its client address) live or not.
struct Verdict {
    by: usize,
    about: String,
    alive: bool,
    /// When the demo read it (the line is read as it is written).
    at: Instant,
}

/// Reads node `number`'s standard error until it closes: verdicts of the failure
/// detector and warnings go into `log`; any other line is shown on the demo's standard
/// error.
async fn watch_log(number: usize, stderr: ChildStderr, log: Arc<watch::Sender<Log>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let at = Instant::now();
        let line = strip_ansi(&line);
        let Some(event) = parse_event(&line) else {
            eprintln!("   [node-{number}] {line}");
            continue;
        };
        if event.message == "computing node liveness" {
            let (Some(about), Some(alive)) = (event.field("node_id"), event.field("is_alive"))
            else {
                continue;
            };
            let alive = alive == "true";
            let about = about.to_owned();
            log.send_if_modified(|log| {
                let key = (number, about.clone());
                if log.last.get(&key) == Some(&alive) {
                    return false;
                }
                log.last.insert(key, alive);
                log.verdicts.push(Verdict {
                    by: number,
                    about,
                    alive,
                    at,
                });
                true
            });
        } else if matches!(event.level, "WARN" | "ERROR") {
            let message = format!("{} {}", event.level, event.message);
            log.send_if_modified(|log| {
                *log.warnings.entry((number, message)).or_default() += 1;
                false
            });
        }
    }
}

/// A line of a node's log, as tracing's default format writes it:
/// `TIMESTAMP LEVEL target: message key=value ...`.
struct Event<'a> {
    level: &'a str,
    message: &'a str,
    fields: &'a str,
}

impl Event<'_> {
    /// The value of field `name` (up to the next space).
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .split(' ')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}

fn parse_event(line: &str) -> Option<Event<'_>> {
    let line = line.trim_start();
    let (timestamp, rest) = line.split_once(' ')?;
    if !timestamp.ends_with('Z') {
        return None;
    }
    let rest = rest.trim_start();
    let (level, rest) = rest.split_once(' ')?;
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return None;
    }
    let (_target, rest) = rest.split_once(": ")?;
    // The message runs up to the first `key=value`.
    let fields_at = rest
        .match_indices(' ')
        .map(|(i, _)| i)
        .find(|&i| {
            rest[i + 1..]
                .split(' ')
                .next()
                .is_some_and(|word| word.contains('='))
        })
        .unwrap_or(rest.len());
    Some(Event {
        level,
        message: rest[..fields_at].trim(),
        fields: rest[fields_at..].trim(),
    })
}

/// `line` without terminal colour codes (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One call of the load.
struct Call {
    /// The item it added.
    item: String,
    /// The primary the session's token named before the call (`None`: no token yet).
    primary: Option<SocketAddr>,
    started: Instant,
    finished: Instant,
    /// The node that answered (its `--name`), or what went wrong.
    outcome: Result<String, String>,
}

/// One session of the load, and what happened to it.
struct Session {
    id: ClientId,
    cart: ThinCart,
    /// The items whose `add` was acknowledged, in order.
    acknowledged: Vec<String>,
    /// Every item it sent (acknowledged or not).
    sent: HashSet<String>,
    calls: Vec<Call>,
    /// Replies that lacked an item acknowledged before: the cart went backwards.
    backwards: Vec<String>,
}

/// Runs one session from `start` until `until`: adds `u0`, `u1`, ... one of each, one
/// call at a time, one every `pace`.
async fn drive(
    mut session: Session,
    channel: ClusterChannel,
    service: ServiceId,
    (start, pace, until): (Instant, Duration, Instant),
) -> Session {
    let mut ticker = tokio::time::interval_at(start.into(), pace);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut number = 0;
    // Until the first tick past `until` (a tick that is due already is ready at once,
    // even past `until`: hence the second test).
    while tokio::time::timeout_at(until.into(), ticker.tick())
        .await
        .is_ok()
        && Instant::now() < until
    {
        let item = format!("u{number}");
        number += 1;
        session.sent.insert(item.clone());
        let primary = channel.token(session.id, &service).map(|t| t.primary);
        let started = Instant::now();
        let answer = tokio::time::timeout(
            CALL_LIMIT,
            session.cart.add(context::current(), item.clone(), 1),
        )
        .await;
        let finished = Instant::now();
        let outcome = match answer {
            Ok(Ok(Ok(view))) => {
                for earlier in &session.acknowledged {
                    if !view.items.contains_key(earlier) {
                        session.backwards.push(format!(
                            "the reply to {item} by {} lacks {earlier}",
                            view.served_by
                        ));
                    }
                }
                session.acknowledged.push(item.clone());
                Ok(view.served_by)
            }
            Ok(Ok(Err(error))) => Err(format!("the cart refused: {error}")),
            Ok(Err(error)) => Err(procs::call_error(error)),
            Err(_) => Err(format!(
                "no answer within {CALL_LIMIT:?} (the demo's bound)"
            )),
        };
        session.calls.push(Call {
            item,
            primary,
            started,
            finished,
            outcome,
        });
    }
    session
}

/// Makes probe sessions through `channel` until every node has copied a new cart to
/// both other nodes: then each node's membership holds the other two. A probe refused
/// `not-replicated` means its node knows no other yet. Bounded by [`LIMIT`].
async fn converge(nodes: &[Node], channel: &ClusterChannel) -> anyhow::Result<(usize, usize)> {
    let service = cart_service()?;
    let mut copied_to: HashMap<SocketAddr, HashSet<SocketAddr>> = HashMap::new();
    let (mut probes, mut refused) = (0, 0);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let converged = |copied_to: &HashMap<SocketAddr, HashSet<SocketAddr>>| {
        nodes.iter().all(|node| {
            copied_to
                .get(&node.rpc)
                .is_some_and(|peers| peers.len() == nodes.len() - 1)
        })
    };
    bounded("membership to converge", async {
        while !converged(&copied_to) {
            ticker.tick().await;
            let id = ClientId::random()?;
            let cart = CartClient::from(
                SconeClient::thin_for::<CartState>(channel.clone())?.with_client_id(id),
            );
            probes += 1;
            match cart.add(context::current(), "probe".into(), 1).await {
                Ok(Ok(_)) => {
                    let token = channel.token(id, &service).context("a probe's token")?;
                    copied_to
                        .entry(token.primary)
                        .or_default()
                        .extend(token.secondaries);
                }
                Ok(Err(error)) => anyhow::bail!("a probe was refused by the cart: {error}"),
                Err(error) => {
                    let error = CallError::from(error);
                    if error.refusal() != Some(RefusalKind::NotReplicated) {
                        anyhow::bail!("a probe failed: {error}");
                    }
                    refused += 1;
                }
            }
        }
        anyhow::Ok(())
    })
    .await??;
    Ok((probes, refused))
}

fn cart_service() -> anyhow::Result<ServiceId> {
    Ok(examples::cart::service_id()?)
}

/// The checks of the demo: each printed as it is made, the failures kept.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("   ok: {name}");
        } else {
            println!("   FAILED: {name}: {detail}");
            self.0.push(format!("{name}: {detail}"));
        }
    }
}

/// What the demo found.
struct Summary {
    acknowledged: usize,
    lost: usize,
    /// From the kill to the first call of a dead node's session that a survivor
    /// answered; `None` if there was none.
    failover: Option<Duration>,
    /// The checks that failed.
    failed: Vec<String>,
}

/// How long the load runs and how fast: `FAILOVER_SECS` and `FAILOVER_PACE_MS`.
struct Settings {
    secs: f64,
    pace: Duration,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let number = |name: &str, default: f64, least: f64, most: f64| -> anyhow::Result<f64> {
            let Ok(text) = std::env::var(name) else {
                return Ok(default);
            };
            let value: f64 = text
                .parse()
                .with_context(|| format!("{name}={text:?} is not a number"))?;
            anyhow::ensure!(
                (least..=most).contains(&value),
                "{name}={text}: it must be {least} to {most}"
            );
            Ok(value)
        };
        let secs = number(
            "FAILOVER_SECS",
            DEFAULT_SECS,
            KILL_AFTER.as_secs_f64() + 1.0,
            600.0,
        )?;
        let pace_ms = number(
            "FAILOVER_PACE_MS",
            DEFAULT_PACE.as_secs_f64() * 1000.0,
            1.0,
            60_000.0,
        )?;
        Ok(Self {
            secs,
            pace: Duration::from_secs_f64(pace_ms / 1000.0),
        })
    }
}

/// `duration` in whole milliseconds (as the last line counts them).
fn ms(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// How the dead node's sessions came back, as the load's calls saw it.
struct Failover {
    /// Per session the dead node was primary for: from the kill to the end of its first
    /// call answered by a survivor (calls in flight at the kill included: the channel
    /// failed them over).
    served_again: HashMap<ClientId, Duration>,
    /// The first of those among calls sent after the kill.
    first_sent_after: Option<Duration>,
    /// Calls sent after the kill that the dead node answered (none can be).
    answered_by_dead: usize,
}

impl Failover {
    /// For the sessions `of_dead` that node `dead` (its name and client address) was
    /// primary for, killed at `killed_at`.
    fn of(
        sessions: &[Session],
        of_dead: &HashSet<ClientId>,
        dead: (&str, SocketAddr),
        killed_at: Instant,
    ) -> Self {
        let (dead_name, dead_rpc) = dead;
        let mut failover = Self {
            served_again: HashMap::new(),
            first_sent_after: None,
            answered_by_dead: 0,
        };
        for session in sessions {
            for call in &session.calls {
                let Ok(served_by) = &call.outcome else {
                    continue;
                };
                if served_by == dead_name {
                    if call.started >= killed_at {
                        failover.answered_by_dead += 1;
                    }
                    continue;
                }
                if call.finished < killed_at || !of_dead.contains(&session.id) {
                    continue;
                }
                let after = call.finished - killed_at;
                failover.served_again.entry(session.id).or_insert(after);
                if call.started >= killed_at && call.primary == Some(dead_rpc) {
                    failover.first_sent_after = Some(
                        failover
                            .first_sent_after
                            .map_or(after, |first| first.min(after)),
                    );
                }
            }
        }
        failover
    }

    fn first(&self) -> Option<Duration> {
        self.served_again.values().min().copied()
    }

    fn last(&self) -> Option<Duration> {
        self.served_again.values().max().copied()
    }
}

async fn run(server_bin: &Path, settings: &Settings) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut checks = Checks::default();
    let dir = TempDir::new("failover-demo")?;

    step("2. Make the cart service's signing key");
    let (key, key_file) = procs::signing_key(&dir)?;
    println!(
        "   cart key {} (public key {}): every node signs with it and trusts it",
        key.key_id(),
        key.public_key()
    );

    step("3. Start three cart nodes; nodes 2 and 3 join through node 1's gossip");
    let (log_tx, mut log) = watch::channel(Log::default());
    let log_tx = Arc::new(log_tx);
    let first = Node::start(1, server_bin, &key_file, None, &log_tx).await?;
    let seed = first.gossip;
    let mut nodes = vec![first];
    for number in [2, 3] {
        nodes.push(Node::start(number, server_bin, &key_file, Some(seed), &log_tx).await?);
    }
    println!("   each new cart is copied to 1 other node before the reply (k = 1)");

    step("4. Wait until membership has converged: every node copies to both others");
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.rpc).collect();
    let converging = Instant::now();
    let probe_channel = ClusterChannel::new(addrs.clone(), ClusterClientConfig::default());
    let (probes, refused) = converge(&nodes, &probe_channel).await?;
    println!(
        "   converged {} after the last node started: {probes} probe carts, {refused} of \
         them refused `not-replicated` while their node knew no peer yet",
        ms(converging.elapsed())
    );

    let service = cart_service()?;
    let (secs, pace) = (settings.secs, settings.pace);
    step(&format!(
        "5. Load: {SESSIONS} sessions on one ClusterChannel, each adding a new item every \
         {} for {secs} s",
        ms(pace)
    ));
    let config = ClusterClientConfig::default();
    println!(
        "   thin clients: the channel keeps each session's routing token and calls its \
         primary, failing over to the secondary, then to any node, when a node fails or \
         does not answer within {}",
        ms(config.attempt_timeout)
    );
    println!(
        "   up to {:.0} calls/s in all",
        SESSIONS as f64 / pace.as_secs_f64()
    );
    let channel = ClusterChannel::new(addrs, config);
    let load_started = Instant::now();
    let until = load_started + Duration::from_secs_f64(secs);
    let mut ids = Vec::with_capacity(SESSIONS);
    let mut tasks = Vec::with_capacity(SESSIONS);
    for index in 0..SESSIONS {
        let id = ClientId::random()?;
        ids.push(id);
        let cart = CartClient::from(
            SconeClient::thin_for::<CartState>(channel.clone())?.with_client_id(id),
        );
        let session = Session {
            id,
            cart,
            acknowledged: Vec::new(),
            sent: HashSet::new(),
            calls: Vec::new(),
            backwards: Vec::new(),
        };
        // The sessions' calls spread evenly over the pace, not all at once.
        let start = load_started + pace.mul_f64(index as f64 / SESSIONS as f64);
        let times = (start, pace, until);
        let drive = drive(session, channel.clone(), service.clone(), times);
        tasks.push(tokio::spawn(drive));
    }
    // The load's timeline, not a wait for anything.
    tokio::time::sleep_until((load_started + KILL_AFTER).into()).await;
    let mut by_primary: BTreeMap<SocketAddr, HashSet<ClientId>> = BTreeMap::new();
    for id in &ids {
        if let Some(token) = channel.token(*id, &service) {
            by_primary.entry(token.primary).or_default().insert(*id);
        }
    }
    let shares: Vec<String> = nodes
        .iter()
        .map(|node| {
            let count = by_primary.get(&node.rpc).map_or(0, HashSet::len);
            format!("{} {count}", node.name)
        })
        .collect();
    println!(
        "   at {:.1} s, sessions per primary: {}",
        KILL_AFTER.as_secs_f64(),
        shares.join(", ")
    );
    let (dead_rpc, of_dead) = by_primary
        .into_iter()
        .max_by_key(|(rpc, ids)| (ids.len(), std::cmp::Reverse(*rpc)))
        .context("no session has a token yet")?;
    let index = nodes
        .iter()
        .position(|node| node.rpc == dead_rpc)
        .context("the primary is none of the nodes")?;
    let dead = nodes.remove(index);

    step(&format!(
        "6. {} crashes mid-load: SIGKILL, its memory gone (primary of {} sessions)",
        dead.name,
        of_dead.len()
    ));
    let pid = dead.process.pid();
    // Taken just before the signal: what is measured from it is not flattered.
    let killed_at = Instant::now();
    let status = dead.process.kill().await?;
    println!(
        "   {} (pid {pid}): {status}, {} into the load",
        dead.name,
        ms(killed_at - load_started)
    );
    checks.check(
        &format!("{} is dead", dead.name),
        !status.success(),
        format!("it exited with {status}"),
    );
    println!("   the load goes on; waiting for the survivors' membership to declare it dead");
    let about = dead.rpc.to_string();
    let survivors: Vec<usize> = nodes.iter().map(|node| node.number).collect();
    let declared_by = |log: &Log, by: usize| -> Option<Duration> {
        log.verdicts
            .iter()
            .find(|v| v.by == by && v.about == about && !v.alive && v.at >= killed_at)
            .map(|v| v.at - killed_at)
    };
    // Bounded; `wait_for` returns a read guard on the log, dropped with this statement.
    let _ = tokio::time::timeout(
        LIMIT,
        log.wait_for(|log| survivors.iter().all(|&by| declared_by(log, by).is_some())),
    )
    .await;
    let declared: Vec<Option<Duration>> = {
        let log = log.borrow();
        survivors.iter().map(|&by| declared_by(&log, by)).collect()
    };
    for (by, when) in survivors.iter().zip(&declared) {
        match when {
            Some(when) => println!(
                "   node-{by}'s membership declared {} dead {} after the kill (its failure \
                 detector's verdict, read from its log)",
                dead.name,
                ms(*when)
            ),
            None => println!(
                "   node-{by}'s membership had not declared {} dead {LIMIT:?} after the kill",
                dead.name
            ),
        }
    }
    let slowest_declaration = declared
        .iter()
        .try_fold(Duration::ZERO, |most, when| when.map(|when| most.max(when)));
    checks.check(
        &format!(
            "both survivors declared {} dead within {} (target)",
            dead.name,
            ms(DECLARED_TARGET)
        ),
        slowest_declaration.is_some_and(|slowest| slowest < DECLARED_TARGET),
        slowest_declaration.map_or_else(|| "not declared".into(), ms),
    );

    // The load ends on its own at `until`; each task's calls are bounded.
    let mut sessions = Vec::with_capacity(SESSIONS);
    let wait_load = until.saturating_duration_since(Instant::now()) + CALL_LIMIT + LIMIT;
    for task in tasks {
        let session = tokio::time::timeout(wait_load, task)
            .await
            .context("the load did not end in time")??;
        sessions.push(session);
    }
    let calls: Vec<&Call> = sessions.iter().flat_map(|s| &s.calls).collect();
    let acknowledged: usize = sessions.iter().map(|s| s.acknowledged.len()).sum();
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for call in &calls {
        if let Err(error) = &call.outcome {
            *errors.entry(error).or_default() += 1;
        }
    }
    println!(
        "   the load ended {} after it started: {} calls, {acknowledged} acknowledged, {} \
         failed",
        ms(load_started.elapsed()),
        calls.len(),
        calls.len() - acknowledged
    );
    for (error, count) in &errors {
        println!("     {count} x {error}");
    }
    let slowest = calls
        .iter()
        .map(|call| call.finished - call.started)
        .max()
        .unwrap_or_default();
    println!("   slowest call: {}", ms(slowest));

    let failover = Failover::of(&sessions, &of_dead, (&dead.name, dead.rpc), killed_at);
    match (failover.first(), failover.last()) {
        (Some(first), Some(last)) => println!(
            "   failover: {} after the kill a survivor answered the first call of a session \
             {} was primary for; all {} such sessions were served again by their next call, \
             the last {} after the kill (each calls every {})",
            ms(first),
            dead.name,
            failover.served_again.len(),
            ms(last),
            ms(pace)
        ),
        _ => println!(
            "   failover: no call of a session {} was primary for succeeded after the kill",
            dead.name
        ),
    }
    if let Some(first) = failover.first_sent_after {
        println!(
            "   (counting only calls sent after the kill, to the dead primary first: {})",
            ms(first)
        );
    }
    checks.check(
        "no call sent after the kill was answered by the dead node",
        failover.answered_by_dead == 0,
        format!("{} were", failover.answered_by_dead),
    );
    checks.check(
        &format!(
            "every session {} was primary for was served again by a survivor",
            dead.name
        ),
        failover.served_again.len() == of_dead.len(),
        format!("{} of {}", failover.served_again.len(), of_dead.len()),
    );
    checks.check(
        &format!("failover within {} (target)", ms(FAILOVER_TARGET)),
        failover
            .first()
            .is_some_and(|first| first < FAILOVER_TARGET),
        failover.first().map_or_else(|| "none".into(), ms),
    );
    let backwards: Vec<&String> = sessions.iter().flat_map(|s| &s.backwards).collect();
    checks.check(
        "every reply held every item acknowledged before it",
        backwards.is_empty(),
        format!(
            "{} did not, e.g. {:?}",
            backwards.len(),
            &backwards[..backwards.len().min(5)]
        ),
    );

    // A session whose last calls all failed no longer takes updates: say how it ends.
    // One or two failures at the very end can be transient (a `superseded` refusal is
    // the node taking the newer version, and the next call goes through); a wedged
    // session fails every call from some point on.
    const STUCK_AFTER: usize = 3;
    let mut stuck = Vec::new();
    for (index, session) in sessions.iter().enumerate() {
        let failing: Vec<&Call> = session
            .calls
            .iter()
            .rev()
            .take_while(|call| call.outcome.is_err())
            .collect();
        let Some(first) = failing.last() else {
            continue;
        };
        if failing.len() < STUCK_AFTER {
            continue;
        }
        let token = channel.token(session.id, &service);
        stuck.push(format!(
            "session {index}: its last {} calls failed, from {} into the load ({}); its \
             token: version {}, primary {}",
            failing.len(),
            ms(first.started - load_started),
            first.outcome.as_ref().err().map_or("", String::as_str),
            token.as_ref().map_or(0, |token| token.version),
            token.map_or_else(|| "none".into(), |token| token.primary.to_string()),
        ));
    }
    checks.check(
        "every session still takes updates: none ends with 3 or more failed calls in a row",
        stuck.is_empty(),
        format!(
            "{} sessions not, e.g. {:?}",
            stuck.len(),
            &stuck[..stuck.len().min(5)]
        ),
    );

    step("7. Read every cart back from the cluster and check every acknowledged update");
    let (mut lost, mut duplicates) = (0, 0);
    // Per kind of failure: calls, and those whose item is in the cart all the same.
    let mut failed: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut lost_examples = Vec::new();
    let mut served_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut strangers = Vec::new();
    for (index, session) in sessions.iter().enumerate() {
        let what = format!("viewing session {index}'s cart");
        let view = bounded(&what, session.cart.view(context::current()))
            .await?
            .map_err(CallError::from)
            .with_context(|| what.clone())?
            .with_context(|| format!("{what}: refused by the cart"))?;
        *served_by.entry(view.served_by.clone()).or_default() += 1;
        for item in &session.acknowledged {
            match view.items.get(item) {
                None => {
                    lost += 1;
                    if lost_examples.len() < 5 {
                        lost_examples.push(format!("session {index}: {item}"));
                    }
                }
                Some(&quantity) if quantity > 1 => duplicates += 1,
                Some(_) => {}
            }
        }
        for call in &session.calls {
            if let Err(error) = &call.outcome {
                let (calls, in_cart) = failed.entry(error).or_default();
                *calls += 1;
                *in_cart += usize::from(view.items.contains_key(&call.item));
            }
        }
        strangers.extend(
            view.items
                .keys()
                .filter(|item| !session.sent.contains(*item))
                .map(|item| format!("session {index}: {item}")),
        );
    }
    let served: Vec<String> = served_by
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "   {} carts read, served by {}",
        sessions.len(),
        served.join(", ")
    );
    println!(
        "   {acknowledged} acknowledged items: {lost} missing, {duplicates} added twice (a \
         call run again on a survivor after the dead node ran it: at least once across a \
         failover)"
    );
    for (error, (calls, in_cart)) in &failed {
        println!(
            "   {calls} failed call(s), {error}: {in_cart} of their items are in the cart all \
             the same (the call took effect before it failed)"
        );
    }
    checks.check(
        "every cart holds only items its session sent",
        strangers.is_empty(),
        format!(
            "{} others, e.g. {:?}",
            strangers.len(),
            &strangers[..strangers.len().min(5)]
        ),
    );
    checks.check(
        "no cart was served by the dead node",
        !served_by.contains_key(&dead.name),
        format!("{served_by:?}"),
    );
    checks.check(
        "every acknowledged update is in the cluster",
        lost == 0,
        format!("{lost} lost, e.g. {lost_examples:?}"),
    );

    step("8. Stop every process");
    {
        let log = log.borrow();
        if log.warnings.is_empty() {
            println!("   the nodes logged no warnings");
        } else {
            println!(
                "   what the nodes logged at warn and error level, by count (step 4's {refused} \
                 refused probes among them):"
            );
        }
        for ((node, message), count) in &log.warnings {
            println!("     node-{node}: {count} x {message}");
        }
    }
    for node in nodes {
        node.process.kill().await?;
    }
    println!(
        "   done ({:.1}s after the build)",
        started.elapsed().as_secs_f64()
    );
    Ok(Summary {
        acknowledged,
        lost,
        failover: failover.first(),
        failed: checks.0,
    })
}

fn main() -> ExitCode {
    step("1. Build cart-server");
    let result = Settings::from_env().and_then(|settings| {
        let binaries = procs::build(&[Binary::example("examples", "cart-server")])?;
        println!("   {}", binaries[0].display());
        tokio::runtime::Runtime::new()?.block_on(run(&binaries[0], &settings))
    });
    match result {
        Ok(summary) => {
            if summary.failed.is_empty() {
                println!("\nall checks passed");
            } else {
                eprintln!("\n{} check(s) failed:", summary.failed.len());
                for failure in &summary.failed {
                    eprintln!("  {failure}");
                }
            }
            let failover_ms = summary
                .failover
                .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            println!(
                "acknowledged={} lost={} failover_ms={failover_ms}",
                summary.acknowledged, summary.lost
            );
            if summary.lost > 0 || !summary.failed.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("\n{error:#}");
            ExitCode::FAILURE
        }
    }
}
