//! The relay demo: a thin client whose cart lives in a mesh of relays, not in the client.
//!
//! ```sh
//! cargo run --example relay
//! ```
//!
//! It builds the shipped binaries and runs them as processes on 127.0.0.1: one
//! `cart-server` and three `scone-relay`s (A, B, C) meshed together, each the peer of
//! the other two. The demo itself only orchestrates and plays the client: a *thin* cart
//! client, which holds no SCONE, only its client ID. It fills its cart through relay A,
//! which keeps the SCONE and copies it to one peer before replying; kills A with
//! SIGKILL (a crash: A's memory is gone); carries on through the relay that holds no
//! copy, which fetches the cart from the one that does; then restarts the cart server
//! and the client, and finds the cart still there. Each relay's `/metrics` shows where
//! the SCONE is at each step.
//!
//! It exits 0 when every check passed, and 1 naming the check that failed. Every
//! process it started is killed when it ends, either way.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use examples::cart::{self, CartClient, CartRequest, CartResponse, CartView};
use examples::procs::{self, bounded, check, step, Binary, Process, TempDir, LIMIT};
use scone::ClientId;
use scone_rpc::SconeClient;
use tarpc::context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A thin cart client: it sends its client ID and keeps none of the SCONEs it gets back.
type ThinCart = CartClient<SconeClient<CartRequest, CartResponse>>;

/// One `scone-relay` process and the addresses it printed.
struct Relay {
    name: &'static str,
    process: Process,
    /// Where clients connect.
    addr: SocketAddr,
    /// Where its `/metrics` are.
    metrics: SocketAddr,
}

impl Relay {
    /// Starts relay `name`, listening for peers on `mesh` and knowing the `peers`.
    async fn start(
        name: &'static str,
        binary: &Path,
        mesh: SocketAddr,
        peers: &[SocketAddr],
        common: &[String],
    ) -> anyhow::Result<Self> {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics".into(),
            "127.0.0.1:0".into(),
            "--mesh-listen".into(),
            mesh.to_string(),
        ];
        for peer in peers {
            args.extend(["--peer".into(), peer.to_string()]);
        }
        args.extend_from_slice(common);
        // It prints `mesh listening on`, `metrics on http://ADDR/metrics`, then
        // `listening on ADDR` once it serves.
        let (process, lines) = Process::start(&format!("relay {name}"), binary, &args, |l| {
            l.starts_with("listening on ")
        })
        .await?;
        let find = |prefix: &str, suffix: &str| -> anyhow::Result<SocketAddr> {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok())
                .with_context(|| format!("relay {name} printed no {prefix:?} line: {lines:?}"))
        };
        let relay = Self {
            name,
            addr: find("listening on ", "")?,
            metrics: find("metrics on http://", "/metrics")?,
            process,
        };
        println!(
            "   relay {name} (pid {}): clients on {}, peers on {mesh}, metrics on {}",
            relay.process.pid(),
            relay.addr,
            relay.metrics
        );
        Ok(relay)
    }

    /// What its `/metrics` say now: SCONEs held, copies kept for peers, peer queries
    /// answered.
    async fn counters(&self) -> anyhow::Result<Counters> {
        let text = bounded(&format!("relay {}'s metrics", self.name), async {
            let mut stream = TcpStream::connect(self.metrics).await?;
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
                .await?;
            let mut text = String::new();
            stream.read_to_string(&mut text).await?;
            anyhow::Ok(text)
        })
        .await??;
        let value = |name: &str| -> anyhow::Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .with_context(|| format!("relay {}'s metrics lack {name}", self.name))
        };
        Ok(Counters {
            held: value("scone_relay_held_scones")?,
            copies_kept: value("scone_relay_mesh_copies_kept_total")?,
            query_hits: value("scone_relay_mesh_peer_query_hits_total")?,
        })
    }
}

/// A few of a relay's counters.
#[derive(Debug)]
struct Counters {
    /// SCONEs it holds (its own and its peers' copies).
    held: u64,
    /// Copies from peers it kept.
    copies_kept: u64,
    /// Misses a peer answered with a SCONE that verified.
    query_hits: u64,
}

/// Three free loopback addresses for the relays' mesh listeners.
///
/// A relay's peer list is fixed when it starts, and here each relay is the peer of both
/// others, so every mesh address must be known before the first relay starts. The demo
/// binds three listeners on port 0, notes their ports and closes them; the relays then
/// listen there. Another process could take one of the ports in between; that is
/// unlikely on a machine running a demo, and the relay would then fail to start, saying
/// so on standard error.
fn free_mesh_addresses() -> anyhow::Result<[SocketAddr; 3]> {
    let listeners = [(); 3].map(|()| std::net::TcpListener::bind("127.0.0.1:0"));
    let mut addrs = Vec::new();
    for listener in listeners {
        addrs.push(listener?.local_addr()?);
    }
    Ok([addrs[0], addrs[1], addrs[2]])
}

/// Starts a cart server process named `name` on `listen` and returns it and its address
/// (it prints the address as its first line). On a fixed address, tries again for a few
/// seconds, in case the port is not free yet.
async fn start_server(
    binary: &Path,
    key_file: &Path,
    listen: &str,
    name: &str,
) -> anyhow::Result<(Process, SocketAddr)> {
    let args = [
        "--key".into(),
        key_file.display().to_string(),
        "--listen".into(),
        listen.into(),
        "--name".into(),
        name.into(),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Process::start(&format!("cart server {name}"), binary, &args, |_| true).await {
            Ok((process, lines)) => {
                let addr = lines[0]
                    .parse()
                    .with_context(|| format!("cart server {name} printed {:?}", lines[0]))?;
                println!("   cart server {name} (pid {}) on {addr}", process.pid());
                return Ok((process, addr));
            }
            Err(error) if Instant::now() < deadline => {
                println!("   ({error:#}; trying again)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A thin cart client with ID `client`, connected to `relay`: a new connection, and
/// nothing else; a thin client has nothing else.
async fn thin_client(relay: &Relay, client: ClientId) -> anyhow::Result<ThinCart> {
    let channel = bounded("connect", scone_rpc::client::connect(relay.addr)).await??;
    let stub = SconeClient::thin(channel, cart::service_id()?)?.with_client_id(client);
    Ok(CartClient::from(stub))
}

fn show(view: &CartView) -> String {
    let items: Vec<String> = view
        .items
        .iter()
        .map(|(item, n)| format!("{n} {item}"))
        .collect();
    format!("[{}] (served by {})", items.join(", "), view.served_by)
}

/// The items of a view, as (name, quantity).
fn items(view: &CartView) -> Vec<(&str, u32)> {
    view.items.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

/// Makes one call, printing what came back.
async fn call(
    what: &str,
    future: impl Future<Output = Result<Result<CartView, cart::CartError>, tarpc::client::RpcError>>,
) -> anyhow::Result<CartView> {
    let view = bounded(what, future)
        .await?
        .with_context(|| format!("{what}: the call failed"))?
        .with_context(|| format!("{what}: refused by the cart"))?;
    println!("   {what} -> {}", show(&view));
    Ok(view)
}

async fn run(relay_bin: &Path, server_bin: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = TempDir::new("relay-demo")?;

    step("2. Make the cart service's signing key and the mesh secret");
    let (key, key_file) = procs::signing_key(&dir)?;
    // 32 random bytes in hex, as the relays read it: two random client IDs make 32.
    let secret_file = dir.path().join("mesh.secret");
    std::fs::write(
        &secret_file,
        format!("{}{}\n", ClientId::random()?, ClientId::random()?),
    )?;
    println!(
        "   cart key {} (public key {}); the relays trust it for the cart",
        key.key_id(),
        key.public_key()
    );
    println!("   a mesh secret, the same file for all three relays");

    step("3. Start the cart server: it keeps no per-client state");
    let (server, server_addr) =
        start_server(server_bin, &key_file, "127.0.0.1:0", "cart-1").await?;

    step("4. Start three relays, A, B and C, each the peer of the other two");
    let mesh = free_mesh_addresses()?;
    let common = [
        "--route".into(),
        format!("cart={server_addr}"),
        "--trust".into(),
        format!("cart={}", key.public_key()),
        "--mesh-secret-file".into(),
        secret_file.display().to_string(),
    ];
    let mut relays = Vec::new();
    for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
        let peers: Vec<SocketAddr> = (0..3).filter(|&j| j != i).map(|j| mesh[j]).collect();
        relays.push(Relay::start(name, relay_bin, mesh[i], &peers, &common).await?);
    }
    let c = relays.pop().context("relay C")?;
    let b = relays.pop().context("relay B")?;
    let a = relays.pop().context("relay A")?;

    step("5. A thin client fills its cart through relay A");
    let id = ClientId::random()?;
    println!(
        "   client ID {}... (a bearer secret: shown in short, as the relays log it)",
        &id.to_string()[..8]
    );
    println!("   it keeps no SCONE: relay A keeps the reply's and attaches it to the next call");
    let client = thin_client(&a, id).await?;
    call(
        "add 2 apple via A",
        client.add(context::current(), "apple".into(), 2),
    )
    .await?;
    let view = call(
        "add 1 pear via A",
        client.add(context::current(), "pear".into(), 1),
    )
    .await?;
    check(
        "the second call saw the first",
        items(&view) == [("apple", 2), ("pear", 1)],
        show(&view),
    )?;
    let (at_a, at_b, at_c) = (
        a.counters().await?,
        b.counters().await?,
        c.counters().await?,
    );
    println!(
        "   SCONEs held: A {}, B {}, C {}; copies kept for a peer: B {}, C {}",
        at_a.held, at_b.held, at_c.held, at_b.copies_kept, at_c.copies_kept
    );
    check(
        "relay A, which served the calls, holds the SCONE",
        at_a.held == 1,
        format!("{at_a:?}"),
    )?;
    check(
        "exactly one peer holds A's copy (r = 1), acknowledged before each reply",
        at_b.held + at_c.held == 1 && at_b.copies_kept + at_c.copies_kept >= 1,
        format!("B {at_b:?}, C {at_c:?}"),
    )?;
    // The relay with the copy, and the one without: the client goes on through the one
    // without, which must ask its peers.
    let (holder, other) = if at_b.held == 1 { (b, c) } else { (c, b) };
    println!("   relay {} holds the copy", holder.name);
    let kept_before = holder.counters().await?.copies_kept;

    step("6. Relay A crashes: SIGKILL, its memory gone");
    let pid = a.process.pid();
    let status = a.process.kill().await?;
    println!("   relay A (pid {pid}): {status}");
    check(
        "relay A is dead",
        !status.success(),
        format!("it exited with {status}"),
    )?;
    drop(client);
    let refused = tokio::time::timeout(LIMIT, TcpStream::connect(a.addr)).await;
    check(
        "relay A's port refuses connections",
        matches!(refused, Ok(Err(_))),
        format!("{refused:?}"),
    )?;

    step(&format!(
        "7. The client carries on through relay {}, which holds nothing of it",
        other.name
    ));
    let client = thin_client(&other, id).await?;
    let view = call(
        &format!("view via {}", other.name),
        client.view(context::current()),
    )
    .await?;
    check(
        "the cart is all there",
        items(&view) == [("apple", 2), ("pear", 1)],
        show(&view),
    )?;
    let counters = other.counters().await?;
    check(
        &format!(
            "relay {} missed and fetched the SCONE from relay {}",
            other.name, holder.name
        ),
        counters.query_hits == 1 && counters.held == 1,
        format!("{counters:?}"),
    )?;
    let view = call(
        &format!("add 3 plum via {}", other.name),
        client.add(context::current(), "plum".into(), 3),
    )
    .await?;
    check(
        "the client changed its cart after the crash",
        items(&view) == [("apple", 2), ("pear", 1), ("plum", 3)],
        show(&view),
    )?;
    let counters = holder.counters().await?;
    check(
        &format!(
            "relay {} kept {}'s copy of the new version (with A dead, its only live peer)",
            holder.name, other.name
        ),
        counters.copies_kept == kept_before + 1,
        format!("{counters:?}, {kept_before} kept before"),
    )?;

    step("8. Restart the cart server (same address) and the client (same ID)");
    let pid = server.pid();
    let status = server.kill().await?;
    println!("   cart server cart-1 (pid {pid}): {status}");
    let (server, _) =
        start_server(server_bin, &key_file, &server_addr.to_string(), "cart-2").await?;
    // A thin client holds only its client ID: dropping it and its connection, and
    // making a new one with the same ID, is all a client restart is.
    drop(client);
    println!(
        "   a new client, with the same client ID, through relay {}",
        holder.name
    );
    let client = thin_client(&holder, id).await?;
    let view = call(
        &format!("view via {}", holder.name),
        client.view(context::current()),
    )
    .await?;
    check(
        "the cart survived the crash and both restarts",
        items(&view) == [("apple", 2), ("pear", 1), ("plum", 3)],
        show(&view),
    )?;
    check(
        "the new server process served it",
        view.served_by == "cart-2",
        show(&view),
    )?;
    let view = call(
        &format!("add 1 apple via {}", holder.name),
        client.add(context::current(), "apple".into(), 1),
    )
    .await?;
    check(
        "and it goes on changing",
        items(&view) == [("apple", 3), ("pear", 1), ("plum", 3)],
        show(&view),
    )?;
    let stranger = thin_client(&holder, ClientId::random()?).await?;
    let view = call(
        &format!("view via {}, another client ID", holder.name),
        stranger.view(context::current()),
    )
    .await?;
    check(
        "another client ID gets none of it",
        view.items.is_empty(),
        show(&view),
    )?;

    step("9. Stop every process");
    for relay in [other, holder] {
        relay.process.kill().await?;
    }
    server.kill().await?;
    println!(
        "   done ({:.1}s after the build)",
        started.elapsed().as_secs_f64()
    );
    println!("\nall checks passed");
    Ok(())
}

fn main() -> ExitCode {
    step("1. Build scone-relay and cart-server");
    let result = procs::build(&[
        Binary::bin("scone-router", "scone-relay"),
        Binary::example("examples", "cart-server"),
    ])
    .and_then(|binaries| {
        let (relay, server) = (&binaries[0], &binaries[1]);
        println!("   {}\n   {}", relay.display(), server.display());
        tokio::runtime::Runtime::new()?.block_on(run(relay, server))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\n{error:#}");
            ExitCode::FAILURE
        }
    }
}
