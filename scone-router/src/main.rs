//! `scone-relay`: the relay that keeps SCONEs in the network for thin clients. See the
//! `scone_router` library docs for what it does and guarantees.
//!
//! Prints `listening on ADDR` on standard output once it listens (handy with
//! `--listen 127.0.0.1:0`); logs go to standard error, filtered by `RUST_LOG` (default
//! `info`). SIGINT or SIGTERM stops it: it stops accepting, closes client connections,
//! lets the calls it was forwarding finish and stores the SCONEs of the replies it sent
//! (see `Relay::run`), and exits 0.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use scone_router::{ConfigFile, MeshSecret, MeshStore, Relay, RelayConfig, Route, TrustEntry};
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
            config.mesh.secret = Some(MeshSecret::load(path)?);
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
        .init();
    let config = Cli::parse().config()?;
    if config.routes.is_empty() {
        tracing::warn!("no routes: every request will be refused (give --route SERVICE=ADDR)");
    }
    // Listen for the signals before saying we listen, so that none is missed.
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("could not listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let routes: Vec<String> = config.routes.iter().map(Route::to_string).collect();
    let mesh_on = config.mesh.secret.is_some();
    if !mesh_on && (config.mesh.listen.is_some() || !config.mesh.peers.is_empty()) {
        anyhow::bail!(scone_router::ConfigError::MeshWithoutSecret);
    }
    if !mesh_on {
        let relay = Relay::new(&config)?;
        println!("listening on {addr}");
        tracing::info!(%addr, ?routes, trusted_keys = config.trust.len(), "relay listening");
        relay.run(listener, shutdown).await?;
        tracing::info!("relay stopped");
        return Ok(());
    }
    let store = MeshStore::new(&config)?;
    let relay = Relay::with_store(&config, store.clone())?;
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mesh = match config.mesh.listen {
        Some(mesh_addr) => {
            let mesh_listener = tokio::net::TcpListener::bind(mesh_addr)
                .await
                .with_context(|| format!("could not listen for peers on {mesh_addr}"))?;
            println!("mesh listening on {}", mesh_listener.local_addr()?);
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(store.run(mesh_listener, async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })))
        }
        None => None,
    };
    println!("listening on {addr}");
    tracing::info!(%addr, ?routes, peers = ?config.mesh.peers, replicas = config.mesh.replicas, fast = config.mesh.fast, "relay listening, in a mesh");
    let served = relay
        .run(listener, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    if let Some(mesh) = mesh {
        mesh.await??;
    }
    served?;
    tracing::info!("relay stopped");
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
