//! [`ClusterChannel`]: how a client reaches a cluster. It keeps each session's routing
//! token, sends the request to the primary the token names, and fails over to the
//! secondaries, then to any node it knows, when a node does not answer in time.
//!
//! It sits under a `SconeClient` in place of a single connection, so the generated
//! client and the handler code stay as they are:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use examples::cart::{CartClient, CartState};
//! use scone_cluster::{ClusterChannel, ClusterClientConfig};
//! use scone_rpc::SconeClient;
//!
//! let seeds = vec!["10.0.0.1:7001".parse()?, "10.0.0.2:7001".parse()?];
//! let channel = ClusterChannel::new(seeds, ClusterClientConfig::default());
//! let cart = CartClient::from(SconeClient::thin_for::<CartState>(channel)?);
//! cart.add(tarpc::context::current(), "apple".into(), 1).await??;
//! # Ok(()) }
//! ```
//!
//! A thin client is what fits: the cluster holds the state, the client holds a token.
//!
//! **Failover and its cost.** A call the primary does not answer within
//! [`ClusterClientConfig::attempt_timeout`] (or whose connection fails) goes to the next
//! node: the token's secondaries first (one of them holds the session and takes over as
//! primary), then every other node known. A node that answers `session-unavailable` is
//! skipped the same way. If the primary ran the call but its reply was lost, the call
//! runs again on the next node, from the newer version the primary replicated: calls
//! are delivered at least once across a failover, so make the ones that may be retried
//! idempotent where it matters.
//!
//! Every attempt is numbered in the token it carries ([`RoutingToken::attempt`]): a node
//! that runs an attempt the client gave up on (it was paused with the request in its
//! socket, say) cannot make its change replace the one a later attempt was acknowledged
//! with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use scone::{ClientId, ServiceId};
use scone_rpc::client::SconeChannel;
use scone_rpc::envelope::{Outcome, RefusalKind, RequestEnvelope, ResponseEnvelope};
use tarpc::client::stub::Stub;
use tarpc::client::RpcError;

use crate::session::RoutingToken;

/// Settings of a [`ClusterChannel`].
#[derive(Clone, Debug)]
pub struct ClusterClientConfig {
    /// How long one node gets to connect and answer before the next is tried (default
    /// 500 ms): the client's share of the failover time.
    pub attempt_timeout: Duration,
}

impl Default for ClusterClientConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_millis(500),
        }
    }
}

/// Connections to a cluster's nodes and the routing token of each session; a `Stub` of
/// envelopes. Cloning shares it.
#[derive(Clone, Debug)]
pub struct ClusterChannel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClusterClientConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every node heard of: the seeds, and the nodes tokens named.
    nodes: Vec<SocketAddr>,
    /// Open connections by node.
    channels: HashMap<SocketAddr, SconeChannel>,
    /// Each session's newest token, by the client and service that called.
    tokens: HashMap<(ClientId, ServiceId), Box<[u8]>>,
    /// How many requests each session sent with its newest token: the next attempt's
    /// number (see `RoutingToken::attempt`).
    attempts: HashMap<(ClientId, ServiceId), u32>,
    /// Round robin over the nodes for calls without a token.
    next: usize,
}

impl ClusterChannel {
    /// A channel to the cluster that `seeds` (client addresses of some of its nodes)
    /// belong to. Connects lazily, on the first call to each node.
    pub fn new(seeds: Vec<SocketAddr>, config: ClusterClientConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    nodes: seeds,
                    ..State::default()
                }),
            }),
        }
    }

    /// The nodes it knows of.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.inner.lock().nodes.clone()
    }

    /// The routing token it holds for `client`'s session with `service`, decoded.
    pub fn token(&self, client: ClientId, service: &ServiceId) -> Option<RoutingToken> {
        let state = self.inner.lock();
        let bytes = state.tokens.get(&(client, service.clone()))?;
        RoutingToken::decode(bytes).ok()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The nodes to try for `request`, in order, with the token to send (and the same
    /// decoded, when it decodes).
    fn plan(
        &self,
        request: &RequestEnvelope,
    ) -> (Vec<SocketAddr>, Option<Box<[u8]>>, Option<RoutingToken>) {
        let mut state = self.lock();
        let key = (request.client, request.service.clone());
        let token = request
            .token
            .clone()
            .or_else(|| state.tokens.get(&key).cloned());
        let decoded = token
            .as_deref()
            .and_then(|bytes| RoutingToken::decode(bytes).ok());
        let mut order: Vec<SocketAddr> = decoded
            .as_ref()
            .map(|token| token.owners().collect())
            .unwrap_or_default();
        // Then every other node, starting from a different one each call.
        let count = state.nodes.len();
        let start = state.next;
        state.next = state.next.wrapping_add(1);
        for i in 0..count {
            let node = state.nodes[(start + i) % count];
            if !order.contains(&node) {
                order.push(node);
            }
        }
        (order, token, decoded)
    }

    /// Keeps the token of a reply, and learns the nodes it names.
    fn learn(&self, request: &RequestEnvelope, token: &[u8]) {
        let mut state = self.lock();
        if let Ok(decoded) = RoutingToken::decode(token) {
            for node in decoded.owners() {
                if !state.nodes.contains(&node) {
                    state.nodes.push(node);
                }
            }
        }
        let key = (request.client, request.service.clone());
        state.attempts.remove(&key);
        state.tokens.insert(key, token.into());
    }

    /// `token` numbered as the next attempt of `request`'s session: a node that ran an
    /// earlier attempt late (say it was paused with the request in its socket) cannot
    /// replace what a later one made (`SessionStore::put`).
    fn stamp(&self, request: &RequestEnvelope, mut decoded: RoutingToken) -> Box<[u8]> {
        let mut state = self.lock();
        let next = state
            .attempts
            .entry((request.client, request.service.clone()))
            .or_default();
        decoded.attempt = *next;
        *next = next.saturating_add(1);
        decoded.encode()
    }

    fn forget_channel(&self, node: SocketAddr) {
        self.lock().channels.remove(&node);
    }

    /// The open connection to `node`, or a new one.
    async fn channel(&self, node: SocketAddr) -> std::io::Result<SconeChannel> {
        if let Some(channel) = self.lock().channels.get(&node) {
            return Ok(channel.clone());
        }
        let connect = scone_rpc::client::connect(node);
        let channel = tokio::time::timeout(self.config.attempt_timeout, connect)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        self.lock().channels.insert(node, channel.clone());
        Ok(channel)
    }

    /// One attempt on `node`: its answer, or `None` to go on to the next node.
    async fn attempt(
        &self,
        node: SocketAddr,
        ctx: tarpc::context::Context,
        request: RequestEnvelope,
    ) -> Option<Result<ResponseEnvelope, RpcError>> {
        let channel = match self.channel(node).await {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(%node, %error, "node unreachable; trying the next");
                return None;
            }
        };
        let mut ctx = ctx;
        let deadline = std::time::Instant::now() + self.config.attempt_timeout;
        ctx.deadline = ctx.deadline.min(deadline);
        match tokio::time::timeout(self.config.attempt_timeout, channel.call(ctx, request)).await {
            Ok(Ok(reply)) => {
                if let Outcome::Refused(refusal) = &reply.outcome {
                    if refusal.kind == RefusalKind::SessionUnavailable {
                        tracing::debug!(%node, "node cannot find the session; trying the next");
                        return None;
                    }
                }
                Some(Ok(reply))
            }
            Ok(Err(RpcError::Server(error))) => Some(Err(RpcError::Server(error))),
            Ok(Err(error)) => {
                tracing::debug!(%node, %error, "node failed the call; trying the next");
                self.forget_channel(node);
                None
            }
            Err(_) => {
                tracing::debug!(%node, "node did not answer in time; trying the next");
                self.forget_channel(node);
                None
            }
        }
    }
}

impl Stub for ClusterChannel {
    type Req = RequestEnvelope;
    type Resp = ResponseEnvelope;

    async fn call(
        &self,
        ctx: tarpc::context::Context,
        mut request: RequestEnvelope,
    ) -> Result<ResponseEnvelope, RpcError> {
        let inner = &*self.inner;
        let (order, token, decoded) = inner.plan(&request);
        for node in order {
            // A token this build cannot read goes as it came.
            request.token = match &decoded {
                Some(decoded) => Some(inner.stamp(&request, decoded.clone())),
                None => token.clone(),
            };
            if let Some(answer) = inner.attempt(node, ctx, request.clone()).await {
                let reply = answer?;
                if let Some(token) = &reply.token {
                    inner.learn(&request, token);
                }
                return Ok(reply);
            }
        }
        // Some node may have run it before going silent: the advice is "may have run".
        let error: Arc<dyn std::error::Error + Send + Sync> = Arc::new(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "no node of the cluster answered",
        ));
        Err(RpcError::Channel(tarpc::ChannelError::Read(error)))
    }
}
