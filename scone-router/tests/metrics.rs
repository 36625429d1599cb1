//! The relay's counters on `/metrics`: what they count, and the endpoint of the binary
//! over HTTP on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::Stdio;

use common::*;
use scone::SigningKey;
use scone_router::Metrics;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const RELAY: &str = env!("CARGO_BIN_EXE_scone-relay");

/// The value of the sample `name` (a full sample name, `_total` included) in `text`.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (sample_name, value) = line.split_once(' ')?;
        (sample_name == name).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hits_misses_stores_and_evictions() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let mut config = relay_config(&[server.addr], &key);
    // Room for one session: a second client's evicts the first's.
    config.cache.max_entries = NonZeroUsize::MIN;
    let (running, relay) = start_relay(&config).await;
    let metrics = Metrics::new(&relay).with_cache(relay.store().cache().clone());

    let before = metrics.render();
    assert_eq!(sample(&before, "scone_relay_requests_total"), Some(0));
    assert_eq!(sample(&before, "scone_relay_held_scones"), Some(0));
    assert!(
        before.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert!(
        before.contains("# HELP scone_relay_stale_replays Requests that carried an older"),
        "help text comes from the counter's doc:\n{before}"
    );

    let alice = thin_cart(running.addr, client_id(1)).await;
    add(&alice, "apple", 1).await; // a miss; stored
    add(&alice, "apple", 1).await; // a hit; replaced
    wait_until("both replies are kept", || relay.stats().stores == 2).await;
    let bob = thin_cart(running.addr, client_id(2)).await;
    add(&bob, "pear", 1).await; // a miss; stored, evicting alice's
    wait_until("bob's reply is kept", || relay.stats().stores == 3).await;

    let after = metrics.render();
    assert_eq!(sample(&after, "scone_relay_requests_total"), Some(3));
    assert_eq!(sample(&after, "scone_relay_misses_total"), Some(2));
    assert_eq!(sample(&after, "scone_relay_hits_total"), Some(1));
    assert_eq!(sample(&after, "scone_relay_stores_total"), Some(3));
    assert_eq!(sample(&after, "scone_relay_forged_dropped_total"), Some(0));
    assert_eq!(sample(&after, "scone_relay_evictions_total"), Some(1));
    assert_eq!(sample(&after, "scone_relay_held_scones"), Some(1));
    let held_bytes = sample(&after, "scone_relay_held_bytes").unwrap();
    assert_eq!(held_bytes, relay.store().cache().bytes() as u64);
    assert!(held_bytes > 0);
    // Counts only: no client ID in any form.
    assert!(!after.contains("0101010101"), "{after}");
    running.stop().await;
    server.stop().await;
}

/// Sends `request` (a whole HTTP/1.1 request) to `addr` and reads the answer until the
/// server closes.
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = bounded(TcpStream::connect(addr)).await.unwrap();
    bounded(stream.write_all(request.as_bytes())).await.unwrap();
    let mut answer = String::new();
    bounded(stream.read_to_string(&mut answer)).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_metrics_over_http_and_still_stops_on_sigterm() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let route = format!("cart={}", server.addr);
    let trust = format!("cart={}", key.public_key());
    let mut relay = Command::new(RELAY)
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--route", &route, "--trust", &trust])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    let first = bounded(lines.next_line()).await.unwrap().unwrap();
    let metrics: SocketAddr = first
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    let second = bounded(lines.next_line()).await.unwrap().unwrap();
    let addr: SocketAddr = second
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();

    let client = thin_cart(addr, client_id(7)).await;
    add(&client, "apple", 1).await;
    add(&client, "apple", 1).await;

    let get = "GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n";
    let answer = http(metrics, get).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("content-type: application/openmetrics-text"));
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    assert_eq!(sample(body, "scone_relay_requests_total"), Some(2));
    assert_eq!(sample(body, "scone_relay_hits_total"), Some(1));
    assert!(sample(body, "scone_relay_held_scones").is_some());

    let elsewhere = http(
        metrics,
        "GET /x HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
    );
    assert!(elsewhere.await.starts_with("HTTP/1.1 404 "));
    let post =
        "POST /metrics HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert!(http(metrics, post).await.starts_with("HTTP/1.1 405 "));
    let garbage = http(metrics, "\x00\x01 not http at all\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
        "{garbage}"
    );

    // A scraper that connected and sent nothing does not hold the relay up.
    let _idle = bounded(TcpStream::connect(metrics)).await.unwrap();
    let pid = relay.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(bounded(killed).await.unwrap().success());
    let status = bounded(relay.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    server.stop().await;
}
