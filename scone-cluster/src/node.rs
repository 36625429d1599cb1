//! [`ClusterNode`]: the pieces a server needs to keep its sessions in a cluster, wired
//! together: its store and replica, the peer listener, the placement, copies made again
//! when a member is lost, and a graceful leave that hands its sessions over first.

use std::future::Future;
use std::io;
use std::time::Duration;

use scone::{KeyRing, ServiceId, SigningKey};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::membership::{Member, Membership};
use crate::placement::{ClusterConfig, ClusterPlacement, HandOver};
use crate::replica::{IssuerKeyError, Replica};
use crate::store::SessionStore;
use crate::transport::tcp::{serve_peers, serve_peers_with_secret, TcpTransport};

/// Settings of a [`ClusterNode`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Copies, and what to do when too few are made.
    pub cluster: ClusterConfig,
    /// Bound of each connect and call to a peer (default 500 ms).
    pub peer_timeout: Duration,
    /// Most sessions this node holds (default 1,000,000); past it, new sessions are
    /// refused, never evicted.
    pub max_sessions: usize,
    /// How often expired sessions are dropped (default 30 s); each node drops its own
    /// copies, so a session expires on every replica without a message.
    pub purge_interval: Duration,
    /// The cluster secret peers prove they hold before any call, both ways (default
    /// none: peer links are open to whoever reaches them). See [`crate::transport::tcp`].
    pub secret: Option<scone_rpc::peer_link::LinkSecret>,
    /// How often the membership is checked for a lost member, whose sessions are then
    /// copied again (default 250 ms): see [`ClusterPlacement::keep_copies`].
    pub recopy_check: Duration,
    /// How to apply the service state's deltas (`scone_rpc::state::apply_delta::<YourState>`),
    /// so that peers that hold the version before get only the changed fields (default
    /// none: whole copies). See [`Replica::with_deltas`].
    pub deltas: Option<scone_rpc::state::DeltaApplier>,
    /// The service and the signing key this node's server mints with (default none).
    /// With it, copies minted with that key (by any member: they share it) are checked
    /// by their issuer tag, one keyed blake3 hash, instead of their signature: as strong
    /// a check for a node that holds the key, and 35 µs less on each copy's commit path
    /// on a small 2-core machine. See [`Replica::with_issuer_key`].
    pub issuer_key: Option<(ServiceId, SigningKey)>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            cluster: ClusterConfig::default(),
            peer_timeout: Duration::from_millis(500),
            max_sessions: 1_000_000,
            purge_interval: Duration::from_secs(30),
            secret: None,
            recopy_check: Duration::from_millis(250),
            deltas: None,
            issuer_key: None,
        }
    }
}

/// One node of a cluster: plug [`placement`](Self::placement) into the server layer
/// (`SconeLayer::with_placement`) and serve clients as usual; the node serves its peers
/// itself.
///
/// ```no_run
/// # async fn run(key: scone::SigningKey, membership: scone_cluster::StaticMembership) -> anyhow::Result<()> {
/// use scone_cluster::{ClusterNode, Member, NodeConfig};
///
/// let me = Member { rpc: "10.0.0.1:7001".parse()?, peer: "10.0.0.1:7101".parse()?, zone: None };
/// let keys = scone::KeyRing::for_service(scone::ServiceId::new("cart")?, [key.public_key()])?;
/// let peers = tokio::net::TcpListener::bind(me.peer).await?;
/// let config = NodeConfig {
///     issuer_key: Some((scone::ServiceId::new("cart")?, key.clone())),
///     ..NodeConfig::default()
/// };
/// let node = ClusterNode::start(me, keys, membership, peers, config)?;
/// let layer = scone_rpc::SconeLayer::new(scone::ServiceId::new("cart")?, key)?
///     .with_placement(node.placement());
/// // ... serve `layer.wrap(...)` to clients until told to stop, then:
/// let report = node.leave().await?;
/// # Ok(()) }
/// ```
pub struct ClusterNode<M> {
    placement: ClusterPlacement<TcpTransport, M>,
    stop_peers: Option<oneshot::Sender<()>>,
    peers: JoinHandle<io::Result<()>>,
}

impl<M: Membership> ClusterNode<M> {
    /// Starts node `me`: its sessions checked against `keys`, its peers known from
    /// `membership`, serving them on `peer_listener`. Call it inside a tokio runtime.
    ///
    /// Fails with [`IssuerKeyError::NotTrusted`] if `config`'s
    /// [`issuer_key`](NodeConfig::issuer_key) is not one `keys` trusts for its service.
    pub fn start(
        me: Member,
        keys: KeyRing,
        membership: M,
        peer_listener: TcpListener,
        config: NodeConfig,
    ) -> Result<Self, IssuerKeyError> {
        let mut replica = Replica::new(SessionStore::new(config.max_sessions), keys);
        if let Some((service, key)) = &config.issuer_key {
            replica = replica.with_issuer_key(service.clone(), key)?;
        }
        if let Some(apply) = config.deltas {
            replica = replica.with_deltas(apply);
        }
        let mut transport = TcpTransport::new(config.peer_timeout);
        if let Some(secret) = &config.secret {
            transport = transport.with_secret(secret.clone());
        }
        let placement =
            ClusterPlacement::new(me, replica.clone(), transport, membership, config.cluster);
        let (stop_peers, stopped) = oneshot::channel::<()>();
        let store = replica.store().clone();
        let recopier = placement.clone();
        let peers = tokio::spawn(async move {
            let purge = async {
                let mut every = tokio::time::interval(config.purge_interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let dropped = store.purge_expired();
                    if dropped > 0 {
                        tracing::debug!(dropped, "dropped expired sessions");
                    }
                }
            };
            let served = async {
                match config.secret {
                    Some(secret) => {
                        let timeout = config.peer_timeout;
                        serve_peers_with_secret(peer_listener, replica, secret, timeout, stopped)
                            .await
                    }
                    None => serve_peers(peer_listener, replica, stopped).await,
                }
            };
            tokio::select! {
                served = served => served,
                () = purge => Ok(()),
                () = recopier.keep_copies(config.recopy_check) => Ok(()),
            }
        });
        Ok(Self {
            placement,
            stop_peers: Some(stop_peers),
            peers,
        })
    }

    /// The placement to give the server layer (a handle: clones share the node).
    pub fn placement(&self) -> ClusterPlacement<TcpTransport, M> {
        self.placement.clone()
    }

    /// Leaves gracefully: copies every session it holds to k other live members (see
    /// [`ClusterPlacement::hand_over`]), then stops serving peers. Call it once the node
    /// no longer serves clients.
    pub async fn leave(self) -> io::Result<HandOver> {
        let report = self.placement.hand_over().await;
        if report.short > 0 {
            tracing::warn!(
                short = report.short,
                "some sessions reached fewer copies than asked for before leaving"
            );
        }
        self.stop().await?;
        Ok(report)
    }

    /// Stops serving peers, without handing anything over (a node that is going down
    /// anyway, or in tests).
    pub async fn stop(mut self) -> io::Result<()> {
        self.stop_peers.take();
        (&mut self.peers).await.map_err(io::Error::other)?
    }

    /// Runs until `shutdown` completes, then [`leave`](Self::leave)s.
    pub async fn run_until(self, shutdown: impl Future) -> io::Result<HandOver> {
        shutdown.await;
        self.leave().await
    }
}
