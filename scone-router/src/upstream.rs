//! The servers behind each route: used in turn, connected on first use, skipped while
//! they fail to connect, and what happens when a connection is lost.
//!
//! Each upstream address has one connection per thread that serves clients (the
//! listener's worker threads), shared by every request that thread serves (tarpc
//! multiplexes). A connection is opened, and its dispatch task runs, on the thread whose
//! request needed it: a call then never leaves its thread, where one connection shared
//! by all workers cost two thread handoffs per call (measured in the `hop` bench:
//! 7 to 8 context switches per sequential call).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use scone::ServiceId;
use scone_rpc::client::{self, SconeChannel};
use scone_rpc::envelope::{RequestEnvelope, ResponseEnvelope};
use tarpc::client::RpcError;
use tarpc::ServerError;
use tokio::time::Instant;

use crate::config::{Route, UpstreamConfig};

/// Why no upstream answered a request.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No upstream of the route could be connected to.
    Unreachable,
    /// The connection was lost with the request in flight, and it was not sent again.
    Lost,
    /// The request's deadline passed.
    DeadlineExceeded,
    /// The upstream's tarpc server aborted the request (it was over a limit, say).
    Server(ServerError),
}

/// Every route, and how to connect.
#[derive(Debug)]
pub(crate) struct Routes {
    /// The upstreams of each routed service.
    by_service: HashMap<ServiceId, Pool>,
    /// Opens connections on the relay's runtime.
    connector: Connector,
    /// Timeouts, backoff, retry policy.
    config: UpstreamConfig,
}

/// The upstreams of one service, and whose turn is next.
#[derive(Debug)]
pub(crate) struct Pool {
    upstreams: Vec<Upstream>,
    /// Round-robin position.
    next: AtomicUsize,
}

/// One upstream server.
#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    /// Its connection and its connect history.
    state: Mutex<State>,
    /// Held while connecting: one connect at a time, the others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The open connections, by the thread that opened them (and whose runtime runs their
    /// dispatch task), with their generation (which connect made each).
    channels: HashMap<ThreadId, (SconeChannel, u64)>,
    /// Connects attempted so far: names each connection.
    generation: u64,
    /// Connect failures in a row: sets the backoff.
    failures_in_row: u32,
    /// Connect failures in all: a request that waited for another's connect sees whether
    /// that one failed.
    failures: u64,
    /// Skipped until then (while another upstream of the route is not), after a failure.
    retry_at: Option<Instant>,
}

/// Opens connections, on the runtime of the task that asks.
#[derive(Debug)]
pub(crate) struct Connector {
    pub(crate) timeout: Duration,
    pub(crate) max_frame_bytes: usize,
}

impl Connector {
    /// A connection to `addr`, whose dispatch task (which `connect_with` spawns) runs on
    /// the current runtime: a listener worker's own, for a relay's requests.
    async fn connect(&self, addr: SocketAddr) -> std::io::Result<SconeChannel> {
        let timeout = self.timeout;
        let config = tarpc::client::Config::default();
        let connect = client::connect_with(addr, config, self.max_frame_bytes);
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                ))
            })
    }
}

impl Routes {
    pub(crate) fn new(routes: &[Route], connector: Connector, config: UpstreamConfig) -> Self {
        let by_service = routes
            .iter()
            .map(|route| {
                let upstreams = route
                    .upstreams
                    .iter()
                    .map(|&addr| Upstream {
                        addr,
                        state: Mutex::default(),
                        connecting: tokio::sync::Mutex::new(()),
                    })
                    .collect();
                let pool = Pool {
                    upstreams,
                    next: AtomicUsize::new(0),
                };
                (route.service.clone(), pool)
            })
            .collect();
        Self {
            by_service,
            connector,
            config,
        }
    }

    /// The upstreams of `service`, if it is routed.
    pub(crate) fn get(&self, service: &ServiceId) -> Option<&Pool> {
        self.by_service.get(service)
    }

    /// Sends `request` to the next upstream of `pool` that answers.
    ///
    /// Upstreams are tried in turn from the next one's, those backing off after a connect
    /// failure last. On each, the request goes on its open connection; if that connection
    /// turns out lost, it goes again on a new one (when retries are on), then on to the
    /// next upstream. An answer of any kind (a reply, a refusal, the server's own error)
    /// or the deadline ends it.
    pub(crate) async fn call(
        &self,
        pool: &Pool,
        ctx: tarpc::context::Context,
        request: RequestEnvelope,
    ) -> Result<ResponseEnvelope, UpstreamError> {
        let mut failure = UpstreamError::Unreachable;
        for upstream in pool.order(Instant::now()) {
            // At most twice per upstream: on its open connection, and once more on a new
            // one if that connection turns out lost.
            for _ in 0..2 {
                let (channel, generation, fresh) = match upstream
                    .channel(&self.connector, &self.config)
                    .await
                {
                    Ok(connected) => connected,
                    Err(error) => {
                        tracing::debug!(upstream = %upstream.addr, %error, "upstream unreachable");
                        break;
                    }
                };
                match channel.call(ctx, request.clone()).await {
                    Ok(reply) => return Ok(reply),
                    Err(RpcError::Server(error)) => return Err(UpstreamError::Server(error)),
                    Err(RpcError::DeadlineExceeded) => return Err(UpstreamError::DeadlineExceeded),
                    Err(error) => {
                        tracing::debug!(upstream = %upstream.addr, %error, "upstream connection lost");
                        upstream.lost(generation);
                        if !self.config.retry_after_connection_loss {
                            return Err(UpstreamError::Lost);
                        }
                        failure = UpstreamError::Lost;
                        if fresh {
                            break;
                        }
                    }
                }
            }
        }
        Err(failure)
    }
}

impl Pool {
    /// The upstreams in the order to try them for one request: in turn from the next
    /// one's, those backing off last.
    fn order(&self, now: Instant) -> Vec<&Upstream> {
        let count = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
        let rotated = (0..count).map(|i| &self.upstreams[(start + i) % count]);
        let (mut ready, backing_off): (Vec<_>, Vec<_>) =
            rotated.partition(|upstream| !upstream.backing_off(now));
        ready.extend(backing_off);
        ready
    }
}

impl Upstream {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is one complete step: a panic elsewhere leaves consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether it failed to connect lately and has no connection on this thread.
    fn backing_off(&self, now: Instant) -> bool {
        let state = self.lock();
        !state.channels.contains_key(&std::thread::current().id())
            && state.retry_at.is_some_and(|at| at > now)
    }

    /// Its connection on this thread, its generation, and whether it was opened just
    /// now: the open one, or a new one.
    async fn channel(
        &self,
        connector: &Connector,
        config: &UpstreamConfig,
    ) -> std::io::Result<(SconeChannel, u64, bool)> {
        let thread = std::thread::current().id();
        let failures_before = {
            let state = self.lock();
            if let Some((channel, generation)) = state.channels.get(&thread) {
                return Ok((channel.clone(), *generation, false));
            }
            state.failures
        };
        let _connecting = self.connecting.lock().await;
        let generation = {
            let mut state = self.lock();
            if let Some((channel, generation)) = state.channels.get(&thread) {
                return Ok((channel.clone(), *generation, false));
            }
            if state.failures != failures_before {
                // Another request tried while this one waited, and failed: no second knock.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the upstream just failed to connect",
                ));
            }
            state.generation += 1;
            state.generation
        };
        match connector.connect(self.addr).await {
            Ok(channel) => {
                let mut state = self.lock();
                state.channels.insert(thread, (channel.clone(), generation));
                state.failures_in_row = 0;
                state.retry_at = None;
                tracing::debug!(upstream = %self.addr, "connected");
                Ok((channel, generation, true))
            }
            Err(error) => {
                let mut state = self.lock();
                state.failures += 1;
                state.failures_in_row = state.failures_in_row.saturating_add(1);
                let doublings = state.failures_in_row.saturating_sub(1).min(16);
                let backoff = config
                    .backoff_min
                    .saturating_mul(1 << doublings)
                    .min(config.backoff_max);
                state.retry_at = Some(Instant::now() + backoff);
                if state.failures_in_row == 1 {
                    tracing::warn!(upstream = %self.addr, %error, "upstream failed to connect; backing off");
                }
                Err(error)
            }
        }
    }

    /// Forgets connection `generation`, which was found lost (unless a newer one has
    /// replaced it meanwhile).
    fn lost(&self, generation: u64) {
        let mut state = self.lock();
        // Generations are unique across threads: whichever thread's it was.
        state.channels.retain(|_, (_, open)| *open != generation);
    }
}
