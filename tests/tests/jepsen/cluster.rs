//! The cluster under test: `cart-server --placement cluster` nodes on 127.0.0.1, each on
//! ports fixed for the whole run (picked up front, below the ephemeral range), started,
//! killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT), and restarted on the same
//! ports; their standard error kept for the failure report, and their `/metrics` read
//! (membership, the nodes' own counts).

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use examples::procs::{Options, Process};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::lock;
use crate::profile::Profile;

/// Bound of one scrape of a node's `/metrics`.
const SCRAPE_LIMIT: Duration = Duration::from_secs(1);

/// Starts of a node before giving up (a port of a killed node may take a moment).
const START_ATTEMPTS: usize = 3;
/// What the nodes log: warnings, and the cluster's own notes (read repair); not tarpc's
/// line per request past its deadline (many, during a fault).
const NODE_LOG: &str = "warn,scone_cluster=info,tarpc::server::in_flight_requests=off,\
                        tarpc::client::in_flight_requests=off";
/// Lines of each node's standard error kept, shown when the test fails.
const LOG_KEEP: usize = 400;

/// A node's addresses: the same in every incarnation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports {
    pub(crate) rpc: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) gossip: SocketAddr,
    pub(crate) metrics: SocketAddr,
}

/// The profile's nodes, not started yet: ports drawn from `seed` (a replay runs on the
/// same ones, if free), each node with every other's gossip as a seed.
pub(crate) fn nodes(
    profile: &Profile,
    seed: u64,
    key_file: &Path,
    logs: &[SharedLog],
) -> anyhow::Result<Vec<Node>> {
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
        if profile.sealed {
            let secret = key_file.with_file_name("cluster.secret");
            if !secret.exists() {
                // 32 bytes in hex, the same on every node.
                let bytes: Vec<u8> = (0..32).map(|_| port_rng.u8(..)).collect();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                std::fs::write(&secret, hex).context("writing the cluster secret")?;
            }
            args.extend(["--cluster-secret-file".into(), secret.display().to_string()]);
        }
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
    Ok(nodes)
}

/// `count` distinct ports free for TCP and UDP on 127.0.0.1, below the ephemeral range (so
/// no outgoing connection takes one while its node is down), drawn from `rng`.
pub(crate) fn free_ports(count: usize, rng: &mut fastrand::Rng) -> anyhow::Result<Vec<u16>> {
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
pub(crate) struct NodeLog {
    pub(crate) lines: VecDeque<String>,
    pub(crate) total: usize,
}

pub(crate) type SharedLog = Arc<Mutex<NodeLog>>;

/// One cart node: its process while it runs, and how to start it again.
pub(crate) struct Node {
    /// 1-based, as in `node-1`.
    pub(crate) number: usize,
    pub(crate) ports: Ports,
    pub(crate) args: Vec<String>,
    pub(crate) process: Option<Process>,
    pub(crate) paused: bool,
    /// Starts so far.
    pub(crate) incarnations: usize,
    pub(crate) log: SharedLog,
}

/// `JEPSEN_LOG_DIR/<name>.log`, opened to append, when `JEPSEN_LOG_DIR` is set: every line
/// of every incarnation of the node, not just the last ones the failure report shows.
fn log_file(name: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Ok(dir) = std::env::var("JEPSEN_LOG_DIR") else {
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("JEPSEN_LOG_DIR={dir:?}"))?;
    let path = std::path::Path::new(&dir).join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Some(file))
}

impl Node {
    pub(crate) fn name(&self) -> String {
        format!("node-{}", self.number)
    }

    /// Starts it (again) on its ports; bounded.
    pub(crate) async fn start(&mut self, binary: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(self.process.is_none(), "{} runs already", self.name());
        let name = self.name();
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let options = Options {
                rust_log: std::env::var("JEPSEN_NODE_LOG").unwrap_or_else(|_| NODE_LOG.into()),
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
                let mut file = log_file(&name)?;
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(file) = &mut file {
                            // A lost line of a debugging aid is not worth failing for.
                            let _ = writeln!(file, "[{tag}] {line}");
                        }
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

    pub(crate) fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Process::pid)
    }

    pub(crate) fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
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
    pub(crate) fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// SIGKILL (resumed first if paused), and waits for it to be gone (bounded): its exit
    /// status, and how long it took to be reaped after the signal.
    pub(crate) async fn kill(&mut self) -> anyhow::Result<(ExitStatus, Duration)> {
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
pub(crate) async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
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
pub(crate) fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Prints each node's own counts, as its last incarnation saw them (a node that does not
/// answer is left out).
pub(crate) async fn print_counts(nodes: &[Node]) {
    for node in nodes {
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
}
