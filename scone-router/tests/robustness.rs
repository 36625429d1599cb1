//! Hostile and broken peers do not take the relay down: garbage, oversize frames and
//! half-open connections are closed by the listener's own guards, and the relay keeps
//! serving.

mod common;

use std::time::Duration;

use common::*;
use scone::SigningKey;
use scone_rpc::server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the relay closes the connection (end of stream or reset), within the
/// test's limit.
async fn closed_by_relay(socket: &mut TcpStream) {
    let mut buffer = [0u8; 256];
    loop {
        match bounded(socket.read(&mut buffer)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_and_half_open_connections_do_not_stop_the_relay() {
    let key = SigningKey::generate().unwrap();
    let server = cart_server(&key, "only").await;
    let mut config = relay_config(&[server.addr], &key);
    // Two connections at most, and short timeouts, so that the broken peers below hold
    // every permit until the listener's guards free them.
    config.server = ServerConfig {
        max_connections: 2,
        idle_timeout: Duration::from_millis(300),
        frame_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (relay_task, relay) = start_relay(&config).await;
    let connect = || async { bounded(TcpStream::connect(relay_task.addr)).await.unwrap() };

    // A frame of garbage: it does not decode, so its connection is closed.
    let mut garbage = connect().await;
    garbage.write_all(&8u32.to_be_bytes()).await.unwrap();
    garbage.write_all(b"\xff\xfe garbage").await.unwrap();
    closed_by_relay(&mut garbage).await;

    // A frame announced far over the limit: closed before it is read.
    let mut oversize = connect().await;
    oversize.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    closed_by_relay(&mut oversize).await;

    // Two half-open peers take both permits: one sends half a length prefix and stops,
    // the other sends nothing.
    let mut trickle = connect().await;
    trickle.write_all(&[0, 0]).await.unwrap();
    let mut silent = connect().await;

    // A real client waits in the backlog until the guards close them, then is served.
    let client = thin_cart(relay_task.addr, client_id(1)).await;
    assert_eq!(items(&add(&client, "apple", 1).await), [("apple", 1)]);
    closed_by_relay(&mut trickle).await;
    closed_by_relay(&mut silent).await;
    assert_eq!(items(&add(&client, "apple", 1).await), [("apple", 2)]);
    // Stored in the background, after the reply.
    wait_until("both changes are stored", || relay.stats().stores == 2).await;
    relay_task.stop().await;
    server.stop().await;
}
