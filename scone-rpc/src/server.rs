//! The server: a SCONE layer around a tarpc service, and a listener to run it, over TCP
//! ([`run`]) or TLS ([`run_tls`]), or one connection over any stream ([`serve_stream`]).
//!
//! The listener follows mini-redis: a permit from a semaphore is taken *before* each
//! accept (bounding connections), each connection is served by its own task with a cap on
//! in-flight requests (tarpc answers requests over the cap with an error instead of
//! queueing them), and shutdown is explicit: stop accepting, close connections, let the
//! handlers still running finish, then return.
//!
//! Connections are spread over worker threads, one per core, each running its own
//! single-threaded runtime. That is what lets us run any tarpc service: its handlers are
//! `async fn`s in a trait, whose futures generic code cannot prove `Send` (that needs
//! return-type notation, not stable yet), so they cannot go to `tokio::spawn`; on a worker
//! they run with `spawn_local`, which needs no `Send`. A TLS server does each handshake on
//! the worker that got the connection; then plain and TLS connections take the same path.
//!
//! # Idle and slow peers
//! An open connection holds one of [`max_connections`](ServerConfig::max_connections)
//! permits, and its requests in flight hold the frames they came in. So that idle or slow
//! peers can neither take every permit nor pin memory, a connection is closed when
//! - it has had no request in flight and received no frame for
//!   [`idle_timeout`](ServerConfig::idle_timeout);
//! - a frame has started arriving and not finished within
//!   [`frame_timeout`](ServerConfig::frame_timeout) (a "slowloris" peer);
//! - its replies have waited for the peer to read them, with none going through, for
//!   `frame_timeout` (a peer that sends requests but never reads);
//! - its TLS handshake takes longer than
//!   [`tls_handshake_timeout`](ServerConfig::tls_handshake_timeout);
//!
//! and it stops reading (so its peer stops sending) while its requests in flight hold
//! [`max_in_flight_bytes_per_connection`](ServerConfig::max_in_flight_bytes_per_connection)
//! bytes of frames. The two timeouts are checked every quarter of the shorter (no timer per
//! message), so each fires between one and one and a half times its length after the fact.
//!
//! Not covered: a budget of frame bytes across all connections (each has its own).

mod connection;
mod guard;
mod listener;
pub mod placement;
pub mod replay;
mod serve;
mod signer;
mod worker;

use std::future::Future;
use std::time::Duration;

use tarpc::server::Serve;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::envelope::{RequestEnvelope, ResponseEnvelope};
use worker::Security;

pub use placement::{ClientHeld, Placement};
pub use replay::{MemoryWatermarks, Watermarks};
pub use serve::{LayerConfig, SconeLayer, SconeServe};
pub use signer::SigningStats;

/// Settings of [`run`] and [`run_tls`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Most requests in flight on one connection; more are answered with an error.
    pub max_in_flight_per_connection: usize,
    /// Largest frame read or written.
    pub max_frame_bytes: usize,
    /// Bytes of frames that one connection's requests in flight may hold before the
    /// connection stops reading until some finish: a slow or hostile peer cannot make the
    /// server keep more of its requests than this.
    ///
    /// Worst case per connection: this plus one frame (the one that crosses it) held by
    /// requests, plus one frame half-read in the read buffer; with the defaults 4 + 1 + 1 =
    /// 6 MiB, so 6 GiB for 1,024 connections (the in-flight cap alone allowed 256 frames of
    /// 1 MiB, 256 MiB per connection). A frame shares its allocation with whatever was read
    /// with it, so a small request can keep up to one read block alive (8 to 64 KiB): add
    /// at most `max_in_flight_per_connection` × 64 KiB for many small requests (16 MiB
    /// with the defaults).
    pub max_in_flight_bytes_per_connection: usize,
    /// A connection with no request in flight that has received no whole frame for this
    /// long is closed, freeing its permit; a client's calls on it then fail, and it
    /// connects again. Nothing is lost: the client holds the state.
    pub idle_timeout: Duration,
    /// A frame that has started arriving must finish within this, or the connection is
    /// closed: a peer cannot hold a permit by trickling a frame byte by byte. Replies
    /// that wait this long for the peer to read them, with none going through, close the
    /// connection too.
    pub frame_timeout: Duration,
    /// A TLS handshake ([`run_tls`]) must finish within this, or the connection is closed.
    pub tls_handshake_timeout: Duration,
    /// Worker threads serving connections; 0 means one per available core.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_in_flight_per_connection: 256,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight_bytes_per_connection: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(120),
            frame_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            workers: 0,
        }
    }
}

/// Serves `serve` on `listener` until `shutdown` completes, then waits for the handlers
/// still running to finish.
///
/// At shutdown connections are closed, so replies to requests still in flight may not be
/// delivered; the caller sees an error and retries, on this server or another holding the
/// same key. Nothing is lost, since the server holds no state. Errors of single
/// connections are logged and do not stop the server.
pub async fn run<S>(
    listener: TcpListener,
    serve: S,
    config: ServerConfig,
    shutdown: impl Future,
) -> std::io::Result<()>
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + Send + 'static,
{
    listener::run(listener, Security::Plain, serve, config, shutdown).await
}

/// Serves one connection over `io`, a stream of any kind (an in-memory
/// `tokio::io::duplex` in tests, a Unix socket, TLS set up your own way), with the
/// per-connection bounds and timeouts of `config`, until the peer leaves, a guard closes
/// it, or `shutdown` completes; then waits for its handlers still running to finish.
///
/// The handlers run on a `LocalSet` inside the returned future (so, like [`run`], any
/// tarpc service will do, `Send` or not); `config.max_connections` and `workers` do
/// not apply.
///
/// The future is not `Send` (its handlers need not be): await it, or join it with the
/// client's side, as here with a cart served over an in-memory pipe:
///
/// ```
/// # use scone_rpc::envelope::{RequestEnvelope, ResponseEnvelope};
/// # async fn run<S>(serve: S)
/// # where S: tarpc::server::Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + 'static {
/// use scone_rpc::server::{serve_stream, ServerConfig};
///
/// let (client_end, server_end) = tokio::io::duplex(64 * 1024);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = serve_stream(server_end, serve, ServerConfig::default(), stopped);
/// let client = async move {
///     let channel = scone_rpc::client::over(client_end, Default::default(), 1 << 20);
///     // ... calls through `channel` ...
///     drop(stop);
/// };
/// tokio::join!(server, client);
/// # }
/// ```
pub async fn serve_stream<S, Io>(io: Io, serve: S, config: ServerConfig, shutdown: impl Future)
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + 'static,
    Io: AsyncRead + AsyncWrite + 'static,
{
    let (shutdown_tx, shutdown_rx) = broadcast::channel(1);
    // Held by the connection and each of its requests: all gone means all done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let connection = connection::Connection {
        peer: connection::Peer(None),
        serve,
        config,
        shutdown_rx,
        done: done_tx,
    };
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let mut serving = tokio::task::spawn_local(connection.serve(io));
            tokio::select! {
                _ = &mut serving => {}
                _ = shutdown => {
                    let _ = shutdown_tx.send(());
                    let _ = serving.await;
                }
            }
            let _ = done_rx.recv().await;
        })
        .await;
}

/// [`run`] over TLS: each connection is served after a TLS handshake with `acceptor`
/// (see [`tls`](crate::tls) for how to make one). A handshake that fails or takes longer
/// than [`tls_handshake_timeout`](ServerConfig::tls_handshake_timeout) closes that
/// connection only.
pub async fn run_tls<S>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    serve: S,
    config: ServerConfig,
    shutdown: impl Future,
) -> std::io::Result<()>
where
    S: Serve<Req = RequestEnvelope, Resp = ResponseEnvelope> + Clone + Send + 'static,
{
    listener::run(listener, Security::Tls(acceptor), serve, config, shutdown).await
}
