//! Idle and slow peers against a real cart server on loopback TCP: they are disconnected
//! on time, so they can neither take every connection permit nor hold one forever, and a
//! real client is still served.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bounded, TestServer};
use examples::cart::{self, Cart, CartRequest, CartServer};
use scone::{ServiceId, SigningKey};
use scone_rpc::envelope::{ClientId, RequestEnvelope, ResponseEnvelope, ENVELOPE_VERSION};
use scone_rpc::server::{self, ServerConfig};
use scone_rpc::{SconeClient, SconeLayer, SconeStore};
use tarpc::{context, ClientMessage, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Few permits and short timeouts, so that the tests are quick.
fn small_config(idle_timeout: Duration, frame_timeout: Duration) -> ServerConfig {
    ServerConfig {
        max_connections: 16,
        idle_timeout,
        frame_timeout,
        workers: 2,
        ..ServerConfig::default()
    }
}

async fn cart_server(config: ServerConfig) -> TestServer {
    let key = SigningKey::generate().unwrap();
    TestServer::start(move |listener, stop| async move {
        let layer = SconeLayer::new(cart::service_id()?, key)?;
        let serve = layer.wrap(
            CartServer {
                name: "guarded".into(),
            }
            .serve(),
        );
        server::run(listener, serve, config, stop).await?;
        Ok(())
    })
    .await
}

/// Waits until the server closes `socket` (end of stream or reset), reading whatever it
/// sends meanwhile; fails the test past the time limit.
async fn closed_by_server(socket: &mut TcpStream) {
    let mut buffer = [0u8; 256];
    bounded(async {
        while let Ok(read @ 1..) = socket.read(&mut buffer).await {
            let _ = read;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_out_a_real_client() {
    let server = cart_server(small_config(
        Duration::from_millis(300),
        Duration::from_millis(300),
    ))
    .await;
    // Take every permit with sockets that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(bounded(TcpStream::connect(server.addr)).await.unwrap());
    }
    // The real client waits in the accept backlog until idle sockets are closed.
    let started = Instant::now();
    let client = bounded(cart::connect(server.addr, SconeStore::default()))
        .await
        .unwrap();
    let view = tokio::time::timeout(
        Duration::from_secs(5),
        client.add(context::current(), "apple".into(), 1),
    )
    .await
    .expect("a real client is served within a few seconds")
    .unwrap()
    .unwrap();
    assert_eq!(view.items.get("apple"), Some(&1));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "served only once an idle socket was closed"
    );
    for socket in &mut idle {
        closed_by_server(socket).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_peer_is_disconnected() {
    // A long idle timeout: only the frame timeout can end this connection in time.
    let frame_timeout = Duration::from_millis(300);
    let server = cart_server(small_config(Duration::from_secs(60), frame_timeout)).await;
    let mut socket = bounded(TcpStream::connect(server.addr)).await.unwrap();
    let started = Instant::now();
    // A frame of 1,000 bytes is announced, then trickled a byte every 20 ms: it would
    // take 20 s to finish.
    socket.write_all(&1_000u32.to_be_bytes()).await.unwrap();
    let (mut read_half, mut write_half) = socket.split();
    let mut trickled = 0;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 1];
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                read = read_half.read(&mut buffer) => break read,
                _ = pace.tick() => {
                    if write_half.write_all(&[0]).await.is_err() {
                        break Ok(0);
                    }
                    trickled += 1;
                }
            }
        }
    })
    .await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the server closed the connection within a few seconds, got {closed:?}"
    );
    assert!(trickled < 1_000, "the frame never finished");
    assert!(started.elapsed() >= frame_timeout, "not before its time");
    server.stop().await;
}

/// A `view` request to the cart, framed as the client's transport frames it.
fn view_frame(id: u64) -> Vec<u8> {
    let envelope = RequestEnvelope {
        version: ENVELOPE_VERSION,
        client: ClientId::from_bytes([3; 16]),
        service: cart::service_id().unwrap(),
        scones: Default::default(),
        token: None,
        body: Bytes::from(postcard::to_stdvec(&CartRequest::View {}).unwrap()),
    };
    let message = ClientMessage::Request(tarpc::Request {
        context: context::current(),
        id,
        message: envelope,
    });
    let encoded = postcard::to_stdvec(&message).unwrap();
    let mut frame = (encoded.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&encoded);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_in_pieces_within_the_frame_timeout_is_served() {
    let server = cart_server(small_config(
        Duration::from_secs(60),
        Duration::from_millis(800),
    ))
    .await;
    let mut socket = bounded(TcpStream::connect(server.addr)).await.unwrap();
    // Each frame arrives in two pieces 100 ms apart; frames one after another, for longer
    // than the frame timeout in all: only each frame is timed, not the connection.
    for id in 1..=10u64 {
        let frame = view_frame(id);
        let (first, rest) = frame.split_at(frame.len() / 2);
        socket.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket.write_all(rest).await.unwrap();
        let mut len = [0u8; 4];
        bounded(socket.read_exact(&mut len)).await.unwrap();
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        bounded(socket.read_exact(&mut reply)).await.unwrap();
        let reply: Response<ResponseEnvelope> = postcard::from_bytes(&reply).unwrap();
        assert_eq!(reply.request_id, id);
        assert!(reply.message.is_ok(), "served: {:?}", reply.message);
    }
    server.stop().await;
}

#[tarpc::service]
trait Napper {
    /// Takes `millis` to answer.
    async fn nap(millis: u64) -> u64;
}

#[derive(Clone)]
struct NapServer;

impl Napper for NapServer {
    async fn nap(self, _: context::Context, millis: u64) -> u64 {
        // The handler's own work, not a wait for the test.
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_keeps_its_connection_past_the_idle_timeout() {
    let key = SigningKey::generate().unwrap();
    let service = ServiceId::new("napper").unwrap();
    let server_service = service.clone();
    let config = small_config(Duration::from_millis(200), Duration::from_millis(200));
    let server = TestServer::start(move |listener, stop| async move {
        let layer = SconeLayer::new(server_service, key)?;
        server::run(listener, layer.wrap(NapServer.serve()), config, stop).await?;
        Ok(())
    })
    .await;
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();
    let client =
        NapperClient::from(SconeClient::caching(channel, service, SconeStore::default()).unwrap());
    // Five idle timeouts long: answered all the same.
    let slept = bounded(client.nap(context::current(), 1_000))
        .await
        .unwrap();
    assert_eq!(slept, 1_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_requests_but_never_reads_replies_is_disconnected() {
    let frame_timeout = Duration::from_millis(300);
    let server = cart_server(small_config(Duration::from_secs(60), frame_timeout)).await;
    // A small receive window, so the replies back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut flooder = bounded(socket.connect(server.addr)).await.unwrap();
    let started = Instant::now();
    // Requests go out until the server, which cannot write its replies, gives up on us
    // and the connection breaks; the idle timeout (60 s) would be far beyond the limit.
    let sent = bounded(async {
        for id in 1..=2_000_000u64 {
            if flooder.write_all(&view_frame(id)).await.is_err() {
                return id;
            }
        }
        panic!("two million requests went out without the server giving up");
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= frame_timeout,
        "cut off after {waited:?}, {sent} requests"
    );

    // And the server still serves a real client.
    let client = bounded(cart::connect(server.addr, SconeStore::default()))
        .await
        .unwrap();
    assert!(bounded(client.view(context::current()))
        .await
        .unwrap()
        .is_ok());
    server.stop().await;
}
