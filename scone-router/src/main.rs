//! `scone-relay`: the relay that keeps SCONEs in the network for thin clients. See the
//! `scone_router` library docs for what it does and guarantees.
//!
//! Prints `listening on ADDR` on standard output once it listens (handy with
//! `--listen 127.0.0.1:0`), after `mesh listening on ADDR` and
//! `metrics on http://ADDR/metrics` when those are on; logs go to standard error, filtered by `RUST_LOG` (default
//! `info`). SIGINT or SIGTERM stops it: it stops accepting, closes client connections,
//! lets the calls it was forwarding finish and stores the SCONEs of the replies it sent
//! (see `Relay::run`), and exits 0.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use scone_router::{
    ConfigFile, MeshSecret, MeshStore, Metrics, Relay, RelayConfig, Route, TrustEntry,
};
use tracing_subscriber::EnvFilter;

const EXAMPLES: &str = "\
Examples:
  # Two cart servers behind one relay, trusting the cart's key:
  scone-relay --listen 0.0.0.0:7400 \\
      --route cart=10.0.0.1:7001,10.0.0.2:7001 \\
      --trust cart=$(scone pubkey cart.key | head -n 1)

  # The same from a file (TOML; flags given too override it, service by service):
  scone-relay --config relay.toml

      listen = \"0.0.0.0:7400\"
      [routes]
      cart = [\"10.0.0.1:7001\", \"10.0.0.2:7001\"]
      [trust]
      cart = [\"<public key>\"]

  # A mesh of relays: each keeps a copy of every stored SCONE on one peer (before
  # replying) and asks its peers when it holds nothing; same secret file on every relay:
  head -c 32 /dev/urandom | base64 > mesh.secret
  scone-relay --config relay.toml --mesh-listen 0.0.0.0:7500 \\
      --peer 10.0.0.2:7500 --peer 10.0.0.3:7500 --mesh-secret-file mesh.secret

  # Counters for Prometheus at http://127.0.0.1:9400/metrics:
  scone-relay --config relay.toml --metrics 127.0.0.1:9400

  # More logs:
  RUST_LOG=scone_router=debug scone-relay --config relay.toml

Client IDs are bearer secrets: the relay attaches a client's state to any request that
presents its ID. Logs show only their first 8 hex digits.";

/// A relay between thin SCONE clients and their servers: it keeps each client's SCONEs
/// and attaches them to its next requests.
#[derive(Debug, Parser)]
#[command(name = "scone-relay", version, after_help = EXAMPLES)]
struct Cli {
    /// A TOML file with the same settings; flags override it.
    #[arg(long, env = "SCONE_RELAY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to listen for clients [default: 127.0.0.1:7400].
    #[arg(long, env = "SCONE_RELAY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where to serve the counters for Prometheus (`GET /metrics`) [default: not served].
    #[arg(long, env = "SCONE_RELAY_METRICS", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// The servers of a service, used in turn; repeat for each service.
    #[arg(long = "route", value_name = "SERVICE=ADDR[,ADDR...]")]
    routes: Vec<Route>,
    /// A public key trusted for a service's SCONEs (as `scone pubkey` prints it); repeat
    /// for more keys or services. Only SCONEs that verify are held.
    #[arg(long = "trust", value_name = "SERVICE=PUBKEY")]
    trust: Vec<TrustEntry>,
    /// Most SCONEs held [default: 100000].
    #[arg(long, env = "SCONE_RELAY_CACHE_ENTRIES", value_name = "N")]
    cache_entries: Option<NonZeroUsize>,
    /// Most bytes of SCONEs held [default: 268435456].
    #[arg(long, env = "SCONE_RELAY_CACHE_BYTES", value_name = "BYTES")]
    cache_bytes: Option<usize>,
    /// Most verified signature roots remembered [default: 4096].
    #[arg(long, value_name = "N")]
    verified_roots: Option<NonZeroUsize>,
    /// Most client connections at once [default: 1024].
    #[arg(long, env = "SCONE_RELAY_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Close a client connection idle this long [default: 120s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Give up connecting to a server after this long [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    connect_timeout: Option<Duration>,
    /// Longest a request waits for the verification of its client's last reply
    /// [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pending_wait: Option<Duration>,
    /// Never send a request again after its server connection was lost (it may have
    /// run); for services whose calls have effects outside their state.
    #[arg(long)]
    no_retry: bool,
    /// Where to listen for peer relays of the mesh.
    #[arg(long, env = "SCONE_RELAY_MESH_LISTEN", value_name = "ADDR")]
    mesh_listen: Option<SocketAddr>,
    /// A peer relay's mesh address; repeat for each peer (replaces the file's list).
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<SocketAddr>,
    /// A file holding the mesh secret: 32 random bytes in hex or base64, the same on
    /// every relay of the mesh (`head -c 32 /dev/urandom | base64`). Turns the mesh on.
    #[arg(long, env = "SCONE_RELAY_MESH_SECRET_FILE", value_name = "FILE")]
    mesh_secret_file: Option<PathBuf>,
    /// Peers each stored SCONE is copied to [default: 1].
    #[arg(long, value_name = "N")]
    replicas: Option<NonZeroUsize>,
    /// Copy to peers after the reply has gone on, not before (see the docs' failure
    /// window).
    #[arg(long)]
    fast: bool,
    /// Bound of each peer connect and call [default: 500ms].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    peer_timeout: Option<Duration>,
}

impl Cli {
    /// The settings: defaults, then the file, then the flags.
    fn config(self) -> anyhow::Result<RelayConfig> {
        let mut config = RelayConfig::default();
        if let Some(path) = &self.config {
            ConfigFile::load(path)?.apply(&mut config)?;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(metrics) = self.metrics {
            config.metrics = Some(metrics);
        }
        config.set_routes(self.routes);
        config.set_trust(self.trust);
        if let Some(entries) = self.cache_entries {
            config.cache.max_entries = entries;
        }
        if let Some(bytes) = self.cache_bytes {
            config.cache.max_bytes = bytes;
        }
        if let Some(roots) = self.verified_roots {
            config.verified_roots = roots;
        }
        if let Some(max) = self.max_connections {
            config.server.max_connections = max;
        }
        if let Some(timeout) = self.idle_timeout {
            config.server.idle_timeout = timeout;
        }
        if let Some(timeout) = self.connect_timeout {
            config.upstream.connect_timeout = timeout;
        }
        if let Some(wait) = self.pending_wait {
            config.pending_wait = wait;
        }
        if self.no_retry {
            config.upstream.retry_after_connection_loss = false;
        }
        if let Some(listen) = self.mesh_listen {
            config.mesh.listen = Some(listen);
        }
        if !self.peers.is_empty() {
            config.mesh.peers = self.peers;
        }
        if let Some(path) = &self.mesh_secret_file {
            config.mesh.secret =
                Some(MeshSecret::load(path).map_err(scone_router::ConfigError::from)?);
        }
        if let Some(replicas) = self.replicas {
            config.mesh.replicas = replicas;
        }
        if self.fast {
            config.mesh.fast = true;
        }
        if let Some(timeout) = self.peer_timeout {
            config.mesh.peer_timeout = timeout;
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Cli::parse().config()?;
    if config.routes.is_empty() {
        tracing::warn!("no routes: every request will be refused (give --route SERVICE=ADDR)");
    }
    let mesh_on = config.mesh.secret.is_some();
    if !mesh_on && (config.mesh.listen.is_some() || !config.mesh.peers.is_empty()) {
        anyhow::bail!(scone_router::ConfigError::MeshWithoutSecret);
    }
    // Listen for the signals before saying we listen, so that none is missed.
    let shutdown = shutdown_signal()?;
    let listener = bind(config.listen, "clients").await?;
    let addr = listener.local_addr()?;
    // One signal stops every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    };
    let mut side_tasks = tokio::task::JoinSet::new();
    let routes: Vec<String> = config.routes.iter().map(Route::to_string).collect();
    let served = if mesh_on {
        let store = MeshStore::new(&config)?;
        let relay = Relay::with_store(&config, store.clone())?;
        if let Some(mesh_addr) = config.mesh.listen {
            let mesh_listener = bind(mesh_addr, "peers").await?;
            println!("mesh listening on {}", mesh_listener.local_addr()?);
            side_tasks.spawn(store.clone().run(mesh_listener, stopped()));
        }
        let metrics = Metrics::new(&relay).with_mesh(&store);
        serve_metrics(&config, metrics, &mut side_tasks, stopped()).await?;
        println!("listening on {addr}");
        tracing::info!(%addr, ?routes, peers = ?config.mesh.peers, replicas = config.mesh.replicas, fast = config.mesh.fast, "relay listening, in a mesh");
        relay.run(listener, stop_on(shutdown, stop_tx)).await
    } else {
        let relay = Relay::new(&config)?;
        let metrics = Metrics::new(&relay).with_cache(relay.store().cache().clone());
        serve_metrics(&config, metrics, &mut side_tasks, stopped()).await?;
        println!("listening on {addr}");
        tracing::info!(%addr, ?routes, trusted_keys = config.trust.len(), "relay listening");
        relay.run(listener, stop_on(shutdown, stop_tx)).await
    };
    while let Some(side) = side_tasks.join_next().await {
        side??;
    }
    served?;
    tracing::info!("relay stopped");
    Ok(())
}

/// A listener on `addr`, for `what`.
async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen for {what} on {addr}"))
}

/// Completes when `shutdown` does, telling the other listeners to stop too.
async fn stop_on(
    shutdown: impl std::future::Future<Output = ()>,
    stop: tokio::sync::watch::Sender<bool>,
) {
    shutdown.await;
    let _ = stop.send(true);
}

/// Serves `metrics` on `config.metrics`, if set, until `stopped` completes.
async fn serve_metrics(
    config: &RelayConfig,
    metrics: Metrics,
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(metrics_addr) = config.metrics {
        let metrics_listener = bind(metrics_addr, "metrics scrapes").await?;
        println!(
            "metrics on http://{}/metrics",
            metrics_listener.local_addr()?
        );
        tasks.spawn(metrics.serve(metrics_listener, stopped));
    }
    Ok(())
}

/// Completes at the first SIGINT or SIGTERM.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "shutting down: letting calls in flight finish"
        );
    })
}

/// Completes at the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: letting calls in flight finish");
    })
}
