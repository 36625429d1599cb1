//! What one copy costs on the commit path, alone: a node sends a peer a copy of a new
//! session over TCP on loopback and waits for its answer, one copy at a time, in three
//! ways that take turns copy by copy (so a noisy machine hits them alike):
//!
//! - `open`: no cluster secret, the peer checks the copy's signature (the default);
//! - `tagged`: no cluster secret, the peer holds the signing key and checks the copy's
//!   issuer tag instead (`NodeConfig::issuer_key`, as `cart-server` sets it);
//! - `sealed`: a cluster secret seals every message, the peer checks the tag.
//!
//! Prints p50 and p99 in µs per way, and the signature check alone (`Verifier::verify`
//! on the same SCONEs) for scale. `COPY_ROUND_TRIPS` (default 5,000) copies per way.
//!
//! `cargo bench -p scone-cluster --bench copy_round_trip`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use scone::{Draft, EndpointId, KeyRing, Minter, ServiceId, SigningKey, Verifier};
use scone_cluster::{PeerTransport, Replica, SessionCopy, SessionStore, TcpTransport};
use scone_rpc::peer_link::LinkSecret;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const WAYS: [&str; 3] = ["open", "tagged", "sealed"];

/// Every await gets this long.
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let copies: usize = match std::env::var("COPY_ROUND_TRIPS") {
        Ok(text) => text.parse().context("COPY_ROUND_TRIPS is a number")?,
        Err(_) => 5_000,
    };
    let key = SigningKey::generate()?;
    let service = ServiceId::new("cart")?;
    let keys = KeyRing::for_service(service.clone(), [key.public_key()])?;
    let secret = LinkSecret::generate()?;
    let timeout = Duration::from_secs(2);

    let mut peers = Vec::new();
    let mut transports = Vec::new();
    let mut stops = Vec::new();
    for way in WAYS {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        peers.push(listener.local_addr()?);
        let mut replica = Replica::new(SessionStore::new(copies + 1_000), keys.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        if way != "open" {
            replica = replica.with_issuer_key(service.clone(), &key)?;
        }
        if way != "sealed" {
            tokio::spawn(scone_cluster::serve_peers(listener, replica, stopped));
            transports.push(TcpTransport::new(timeout));
        } else {
            tokio::spawn(scone_cluster::serve_peers_with_secret(
                listener,
                replica,
                secret.clone(),
                timeout,
                stopped,
            ));
            transports.push(TcpTransport::new(timeout).with_secret(secret.clone()));
        }
    }

    // A new session per copy (so every copy is kept, none is "held already"), minted
    // beforehand: only the copy is timed.
    let minter = Minter::new(key);
    let mint = |n: usize| {
        let mut endpoint = [0; 16];
        endpoint[..8].copy_from_slice(&(n as u64).to_le_bytes());
        minter.mint(Draft::new(
            service.clone(),
            EndpointId::from_bytes(endpoint),
        ))
    };
    let warm_up = 300;
    let mut timings = vec![Vec::with_capacity(copies); WAYS.len()];
    for n in 0..warm_up + copies {
        let scone = mint(n)?;
        for turn in 0..WAYS.len() {
            let way = (n + turn) % WAYS.len();
            let copy = SessionCopy::without_lineage(&scone);
            let started = Instant::now();
            copy_once(&transports[way], peers[way], copy).await?;
            if n >= warm_up {
                timings[way].push(started.elapsed());
            }
        }
    }
    let verifier = Verifier::new(keys);
    let mut checks = Vec::with_capacity(copies.min(2_000));
    for n in 0..copies.min(2_000) {
        let scone = mint(n)?;
        let started = Instant::now();
        verifier
            .verify(&scone)
            .context("a SCONE just minted verifies")?;
        checks.push(started.elapsed());
    }

    println!("copy_round_trip: {copies} copies per way, one at a time, over TCP on loopback");
    println!("| way | p50 us | p99 us |");
    println!("| --- | ---: | ---: |");
    for (way, timing) in WAYS.iter().zip(&mut timings) {
        let (p50, p99) = percentiles(timing);
        println!("| {way} | {p50:.1} | {p99:.1} |");
    }
    let (p50, p99) = percentiles(&mut checks);
    println!("| signature check alone | {p50:.1} | {p99:.1} |");
    for stop in stops {
        let _ = stop.send(());
    }
    Ok(())
}

async fn copy_once(
    transport: &TcpTransport,
    peer: SocketAddr,
    copy: SessionCopy,
) -> anyhow::Result<()> {
    tokio::time::timeout(LIMIT, transport.replicate(peer, copy))
        .await
        .context("a copy within the limit")?
        .context("the peer kept the copy")
}

/// p50 and p99 of `timings`, in µs.
fn percentiles(timings: &mut [Duration]) -> (f64, f64) {
    timings.sort_unstable();
    let at = |q: f64| {
        let index = ((timings.len() as f64 * q) as usize).min(timings.len().saturating_sub(1));
        timings.get(index).map_or(0.0, |t| t.as_secs_f64() * 1e6)
    };
    (at(0.50), at(0.99))
}
