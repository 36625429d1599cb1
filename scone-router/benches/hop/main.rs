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
//!
//! The code, a concept a file: [`settings`] (the modes and the environment), [`upstream`]
//! (the cart server), [`process`] (a child process, killed on drop), [`haproxy`]
//! (installing and starting HAProxy), [`relay`] (starting `scone-relay` and reading its
//! `/metrics`), [`target`] (what each mode calls, its clients and the call), [`measure`]
//! (the sequential and throughput runs, proxy CPU, the table); this file runs them in turn
//! and ends with the ratio line.

mod haproxy;
mod measure;
mod process;
mod relay;
mod settings;
mod target;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use scone::SigningKey;

use measure::Results;
use settings::{Mode, Settings};
use upstream::Upstream;

/// Every await that could hang gets this long.
const LIMIT: Duration = Duration::from_secs(10);
/// Calls in flight in the throughput runs, one per client.
const IN_FLIGHT: usize = 64;

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

/// Starts what each mode needs, measures every mode, stops the proxies, and prints the
/// table and the ratio line.
async fn run(settings: Settings, upstream: SocketAddr, key: SigningKey) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (targets, processes) = target::start_targets(&settings, upstream, &key, dir.path()).await;
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
    let latencies = measure::sequential(&targets, settings.calls).await;
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

    let rates = measure::rounds(&targets, &settings).await;
    let mut after_throughput = Vec::new();
    for target in &targets {
        after_throughput.push(target.verify_counters().await);
    }
    for process in processes {
        process.stop().await;
    }

    let results = Results {
        latencies,
        rates,
        baseline: targets.iter().position(|t| t.mode == Mode::Haproxy),
    };
    let relay_row = targets.iter().position(|t| t.mode == Mode::Relay);
    results.print_table(&targets);
    for (index, target) in targets.iter().enumerate() {
        if target.metrics.is_some() {
            println!(
                "{}: signature checks per stored SCONE: sequential {}, {IN_FLIGHT} in flight {}",
                target.mode.name(),
                relay::verifies_per_store(readings[index], after_sequential[index]),
                relay::verifies_per_store(after_sequential[index], after_throughput[index]),
            );
        }
    }
    results.print_errors();
    let (Some(_), Some(relay)) = (results.baseline, relay_row) else {
        println!("(no ratio line: it needs both the haproxy and relay modes)");
        return;
    };
    let (p50, tput) = (
        results.p50_ratio(relay).unwrap_or(f64::NAN),
        results.throughput_ratio(relay).unwrap_or(f64::NAN),
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
    if settings.modes.contains(&Mode::Haproxy) && !haproxy::ensure_haproxy() {
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
