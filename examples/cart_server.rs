//! A cart server that keeps no per-client state: the client holds it (the default), or a
//! cluster of cart servers does (`--placement cluster`). The handler is the same.
//!
//! ```sh
//! cargo run -p scone-cli -- keygen --out cart.key
//! cargo run --example cart-server -- --key cart.key --listen 127.0.0.1:7000
//!
//! # A cluster of three: each new state is copied to one other node before the reply.
//! cargo run --example cart-server -- --key cart.key --placement cluster \
//!     --listen 127.0.0.1:7001 --peer-listen 127.0.0.1:7101 --gossip 127.0.0.1:7201
//! cargo run --example cart-server -- --key cart.key --placement cluster \
//!     --listen 127.0.0.1:7002 --peer-listen 127.0.0.1:7102 --gossip 127.0.0.1:7202 \
//!     --seed 127.0.0.1:7201
//! # ... and a third the same way.
//! ```
//!
//! Prints its client address on the first line of standard output; in a cluster, then
//! `peers on ADDR`, `gossip on ADDR` and, with `--metrics ADDR`,
//! `metrics on http://ADDR/metrics`. Ctrl-C or SIGTERM shuts it down gracefully: it
//! stops taking calls, lets those in flight finish and, in a cluster, copies the
//! sessions it holds to other nodes before it leaves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use examples::cart::{self, CartState};
use scone::{KeyRing, SigningKey};
use scone_cluster::membership::gossip::{GossipConfig, GossipMembership};
use scone_cluster::{
    Batching, ClusterConfig, ClusterNode, Member, NodeConfig, NodeMetrics, Replicas,
};
use scone_rpc::SconeLayer;

/// A server allocates and frees a few KiB per request (frames, futures): mimalloc does that
/// for less CPU than glibc's malloc (see the workspace's `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve the example cart service.
#[derive(Parser)]
struct Args {
    /// The signing key file (make one with `scone keygen --out FILE`).
    #[arg(long)]
    key: PathBuf,
    /// Where to listen for clients; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// The name this server puts in its replies [default: its client address].
    #[arg(long)]
    name: Option<String>,
    /// Who holds the sessions between calls.
    #[arg(long, value_enum, default_value_t = Placement::Client)]
    placement: Placement,
    /// Cluster: where peers send copies (TCP).
    #[arg(long, default_value = "127.0.0.1:0")]
    peer_listen: SocketAddr,
    /// Cluster: where gossip runs (UDP).
    #[arg(long, default_value = "127.0.0.1:0")]
    gossip: SocketAddr,
    /// Cluster: another node's gossip address to join through; repeat for more.
    #[arg(long = "seed", value_name = "HOST:PORT")]
    seeds: Vec<String>,
    /// Cluster: this node's zone; copies go to other zones first.
    #[arg(long)]
    zone: Option<String>,
    /// Cluster: copies of each new state made before the reply: a number, or `all`.
    #[arg(long, default_value = "1")]
    replicas: ReplicasArg,
    /// Cluster: a member (by client address) to copy this node's sessions to first
    /// whenever it is up; repeat for more.
    #[arg(long = "pin-secondary", value_name = "ADDR")]
    pin_secondaries: Vec<SocketAddr>,
    /// Cluster: reply before the copies are made and send them in batches every this
    /// many milliseconds (or at --batch-max changes): faster, but changes of the last
    /// batch window are lost if this node dies. Default: copies made before each reply.
    #[arg(long, value_name = "MS")]
    batch_every_ms: Option<u64>,
    /// Cluster, with --batch-every-ms: send the batch once this many changes wait.
    #[arg(
        long,
        value_name = "N",
        default_value = "100",
        requires = "batch_every_ms"
    )]
    batch_max: usize,
    /// Cluster: where to serve the node's counters for Prometheus (`GET /metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Cluster: a file holding the cluster secret (32 random bytes, hex or base64, the
    /// same on every node: `head -c 32 /dev/urandom | base64`); peers prove they hold it
    /// before any copy or fetch.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Placement {
    /// The client holds its SCONE.
    Client,
    /// The cluster holds it; the client holds a routing token.
    Cluster,
}

#[derive(Clone, Copy, Debug)]
struct ReplicasArg(Replicas);

impl FromStr for ReplicasArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "all" {
            return Ok(Self(Replicas::All));
        }
        text.parse()
            .map(|count| Self(Replicas::Count(count)))
            .map_err(|_| format!("expected a number or `all`, not {text:?}"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let key = SigningKey::load(&args.key)?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let name = args.name.clone().unwrap_or_else(|| addr.to_string());
    println!("{addr}");
    let layer = SconeLayer::for_state::<CartState>(key.clone())?;
    match args.placement {
        Placement::Client => {
            tracing::info!(%addr, key_id = %key.key_id(), %name, "cart server listening");
            cart::serve_with(listener, &layer, &name, shutdown).await?;
        }
        Placement::Cluster => {
            let peers = tokio::net::TcpListener::bind(args.peer_listen)
                .await
                .with_context(|| format!("could not listen for peers on {}", args.peer_listen))?;
            let me = Member {
                rpc: addr,
                peer: peers.local_addr()?,
                zone: args.zone.clone(),
            };
            let mut gossip = GossipConfig::new(me.clone(), args.gossip);
            gossip.seeds = args.seeds.clone();
            let membership = GossipMembership::start(gossip).await?;
            println!("peers on {}", me.peer);
            println!("gossip on {}", membership.gossip_addr());
            let keys = KeyRing::for_service(layer.service().clone(), [key.public_key()])?;
            let secret = match &args.cluster_secret_file {
                Some(path) => Some(scone_rpc::peer_link::LinkSecret::load(path)?),
                None => None,
            };
            let config = NodeConfig {
                cluster: ClusterConfig {
                    replicas: args.replicas.0,
                    pinned_secondaries: args.pin_secondaries.clone(),
                    batching: args.batch_every_ms.map(|ms| Batching {
                        every: std::time::Duration::from_millis(ms.max(1)),
                        max_updates: args.batch_max.max(1),
                    }),
                    ..ClusterConfig::default()
                },
                secret,
                // Peers holding the version before get only the fields that changed.
                deltas: Some(scone_rpc::state::apply_delta::<CartState>),
                // Every member signs with this key: copies are checked by its tag.
                issuer_key: Some((layer.service().clone(), key.clone())),
                ..NodeConfig::default()
            };
            let node = ClusterNode::start(me, keys, membership.clone(), peers, config)?;
            // One signal stops the client listener and the metrics endpoint.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let metrics = match args.metrics {
                Some(metrics_addr) => {
                    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                        .await
                        .with_context(|| {
                            format!("could not listen for scrapes on {metrics_addr}")
                        })?;
                    println!(
                        "metrics on http://{}/metrics",
                        metrics_listener.local_addr()?
                    );
                    let metrics = scone_rpc::metrics::Metrics::new("scone_cluster")
                        .with(NodeMetrics::new(node.placement()));
                    let mut stop = stop_rx.clone();
                    Some(tokio::spawn(metrics.serve(metrics_listener, async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    })))
                }
                None => None,
            };
            let layer = layer.with_placement(node.placement());
            tracing::info!(%addr, key_id = %key.key_id(), %name, "cart node listening");
            cart::serve_with(listener, &layer, &name, async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await?;
            if let Some(metrics) = metrics {
                metrics.await??;
            }
            let report = node.leave().await?;
            tracing::info!(
                handed_over = report.handed_over,
                short = report.short,
                "sessions handed over"
            );
            membership.leave().await?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes at the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
