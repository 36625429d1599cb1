//! The `scone-relay` binary as a process: settings from a file and flags, a thin client
//! through it, and a clean exit on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::*;
use scone::SigningKey;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const RELAY: &str = env!("CARGO_BIN_EXE_scone-relay");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_relays_a_thin_client_and_exits_0_on_sigterm() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    // Routes and keys from the file; the listen address from a flag, which overrides
    // the file's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    let toml = format!(
        "listen = \"127.0.0.1:1\"\n[routes]\ncart = [\"{}\"]\n[trust]\ncart = [\"{}\"]\n",
        server.addr,
        key.public_key()
    );
    std::fs::write(&file, toml).unwrap();
    let mut relay = Command::new(RELAY)
        .arg("--config")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(relay.stdout.take().unwrap()).lines();
    let line = bounded(stdout.next_line()).await.unwrap().expect("a line");
    let addr: std::net::SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();

    let client = thin_cart(addr, client_id(1)).await;
    add(&client, "apple", 1).await;
    assert_eq!(items(&add(&client, "apple", 1).await), [("apple", 2)]);

    let pid = relay.id().expect("running").to_string();
    let kill = bounded(Command::new("kill").args(["-TERM", &pid]).status())
        .await
        .unwrap();
    assert!(kill.success());
    let status = bounded(relay.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_shows_examples_and_a_bad_flag_is_a_usage_error() {
    let help = bounded(Command::new(RELAY).arg("--help").output())
        .await
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for expected in [
        "--route",
        "--trust",
        "--config",
        "Examples:",
        "bearer secrets",
    ] {
        assert!(
            text.contains(expected),
            "--help lacks {expected:?}:\n{text}"
        );
    }
    let bad = bounded(Command::new(RELAY).args(["--route", "cart"]).output())
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SERVICE=ADDR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_flags_need_a_secret_and_a_meshed_relay_listens_for_peers() {
    let without = Command::new(RELAY)
        .args(["--listen", "127.0.0.1:0", "--peer", "127.0.0.1:9"])
        .output();
    let without = bounded(without).await.unwrap();
    assert!(!without.status.success());
    assert!(String::from_utf8_lossy(&without.stderr).contains("mesh needs a secret"));

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("mesh.secret");
    std::fs::write(&secret, "ab".repeat(32)).unwrap();
    let mut relay = Command::new(RELAY)
        .args(["--listen", "127.0.0.1:0", "--mesh-listen", "127.0.0.1:0"])
        .args(["--peer", "127.0.0.1:9", "--mesh-secret-file"])
        .arg(&secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    let first = bounded(lines.next_line()).await.unwrap().unwrap();
    assert!(first.starts_with("mesh listening on "), "{first}");
    let second = bounded(lines.next_line()).await.unwrap().unwrap();
    assert!(second.starts_with("listening on "), "{second}");
    let pid = relay.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(bounded(killed).await.unwrap().success());
    assert!(bounded(relay.wait()).await.unwrap().success());
}

/// A `scone-relay` process with `args`, and the addresses it printed: its mesh address
/// (if it has one) and its client address.
async fn spawn_relay(args: &[String]) -> (tokio::process::Child, Option<SocketAddr>, SocketAddr) {
    let mut relay = Command::new(RELAY)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    let mut mesh = None;
    loop {
        let line = bounded(lines.next_line()).await.unwrap().expect("a line");
        if let Some(addr) = line.strip_prefix("mesh listening on ") {
            mesh = Some(addr.parse().unwrap());
        } else if let Some(addr) = line.strip_prefix("listening on ") {
            return (relay, mesh, addr.parse().unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_sigkill_of_the_relay_process_that_stored_it() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "first").await;
    let upstream = server.addr;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("mesh.secret");
    std::fs::write(&secret, "cd".repeat(32)).unwrap();
    let common = |peers: &[SocketAddr]| {
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--mesh-listen",
            "127.0.0.1:0",
            "--route",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("cart={upstream}"));
        args.push("--trust".into());
        args.push(format!("cart={}", key.public_key()));
        args.push("--mesh-secret-file".into());
        args.push(secret.display().to_string());
        for peer in peers {
            args.push("--peer".into());
            args.push(peer.to_string());
        }
        args
    };
    // Peer lists are fixed at start, so start them in an order where each knows the
    // ones already up: C; B knows C; A knows B and C. A copies to B or C; B holds the
    // copy or asks C.
    let (_c, c_mesh, _) = spawn_relay(&common(&[])).await;
    let (_b, b_mesh, b_addr) = spawn_relay(&common(&[c_mesh.unwrap()])).await;
    let (mut a, _, a_addr) = spawn_relay(&common(&[b_mesh.unwrap(), c_mesh.unwrap()])).await;

    let client = client_id(3);
    let through_a = thin_cart(a_addr, client).await;
    add(&through_a, "apple", 1).await;
    assert_eq!(items(&add(&through_a, "apple", 2).await), [("apple", 3)]);
    // A crash, not a shutdown: nothing of A's memory survives, and nothing is flushed.
    bounded(a.kill()).await.unwrap();
    drop(through_a);

    let through_b = thin_cart(b_addr, client).await;
    assert_eq!(items(&view(&through_b).await), [("apple", 3)]);

    // Restart the server on its address, and the client (a thin one holds only its ID).
    server.stop().await;
    let listener = bounded(tokio::net::TcpListener::bind(upstream))
        .await
        .unwrap();
    let server = cart_on(listener, &key, "second");
    drop(through_b);
    let restarted = thin_cart(b_addr, client).await;
    assert_eq!(
        items(&add(&restarted, "pear", 1).await),
        [("apple", 3), ("pear", 1)]
    );
    server.stop().await;
}
