//! What each mode calls: starting the proxies a mode needs (HAProxy, a relay, a two-relay
//! mesh), the address its clients connect to, its clients (thin through a relay, caching
//! otherwise) and the call they make.

use std::net::SocketAddr;
use std::path::Path;

use examples::cart::{self, CartClient, CartRequest, CartResponse};
use scone::SigningKey;
use scone_rpc::{SconeClient, SconeStore};

use crate::bounded;
use crate::haproxy::start_haproxy;
use crate::measure::cpu_seconds;
use crate::process::Process;
use crate::relay::{self, relay_has_metrics, start_relay};
use crate::settings::{Mode, Settings};

/// The item every call adds.
const ITEM: &str = "apple";

pub type Cart = CartClient<SconeClient<CartRequest, CartResponse>>;

/// Where a mode's clients connect, and the proxy processes whose CPU time counts for it.
pub struct Target {
    pub mode: Mode,
    addr: SocketAddr,
    pub pids: Vec<u32>,
    /// The `/metrics` address of the relay called, if it serves one.
    pub metrics: Option<SocketAddr>,
}

impl Target {
    pub fn proxy_cpu_seconds(&self) -> f64 {
        self.pids.iter().map(|&pid| cpu_seconds(pid)).sum()
    }

    /// The relay's (signature checks, SCONEs verified for storing) so far, from its
    /// `/metrics`; `None` without one or if it does not answer.
    pub async fn verify_counters(&self) -> Option<(f64, f64)> {
        relay::verify_counters(self.metrics?).await
    }
}

/// Starts what each mode needs and returns its target, with the processes to stop.
pub async fn start_targets(
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

/// `count` clients of `target` over `connections` connections, each with its own
/// session and client ID: thin through a relay, caching otherwise.
pub async fn clients(target: &Target, count: usize, connections: usize) -> Vec<Cart> {
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
pub async fn add(client: &Cart) -> u32 {
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
pub fn expected(calls: usize) -> u32 {
    u32::try_from(calls)
        .unwrap_or(u32::MAX)
        .min(cart::MAX_QUANTITY)
}
