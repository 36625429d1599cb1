//! Membership by gossip: [`GossipMembership`], on [chitchat](https://docs.rs/chitchat)
//! (scuttlebutt gossip over UDP, heartbeats, a phi-accrual failure detector).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use scone_cluster::{GossipConfig, GossipMembership, Member, Membership};
//!
//! let me = Member {
//!     rpc: "10.0.0.1:7001".parse()?,
//!     peer: "10.0.0.1:7101".parse()?,
//!     zone: Some("eu-1a".into()),
//! };
//! let mut config = GossipConfig::new(me, "10.0.0.1:7201".parse()?);
//! config.seeds = vec!["10.0.0.2:7201".into(), "10.0.0.3:7201".into()];
//! let membership = GossipMembership::start(config).await?;
//! // Give a clone to the placement (`ClusterPlacement::new(.., membership.clone(), ..)`).
//! println!("{:?}", membership.members());
//! // On the way out: tell the others, then stop.
//! membership.leave().await?;
//! # Ok(()) }
//! ```
//!
//! # What each node publishes
//! Its chitchat key-values: `rpc_addr` and `peer_addr` (socket addresses, as text),
//! `zone` (only if it has one) and `status` (`up`, or `leaving` during a graceful
//! [leave](GossipMembership::leave)). A node counts as a member while the failure
//! detector holds it live, its `status` is not `leaving` and it has an `rpc_addr`; a
//! node whose addresses do not parse is left out (logged once, at debug).
//!
//! # Identity
//! A node is `(node_id, generation, gossip address)`. `node_id` must be unique in the
//! cluster (nothing checks it); the generation is the start time in unix milliseconds
//! (strictly increasing within a process), so a node restarted under the same
//! `node_id` is a new chitchat node, and until the old one is declared dead both are
//! live: [`GossipMembership::members`] keeps the one with the highest generation.
//!
//! # Failure detection
//! chitchat's detector declares a node dead when the time since its last new heartbeat
//! exceeds `phi_threshold` times the mean interval between new heartbeats, the mean
//! being smoothed by 5 samples of `initial_interval`; intervals above `max_interval`
//! are not sampled. Liveness is recomputed at the end of each local gossip round. A
//! peer's heartbeat reaches a node once or twice per gossip interval, so with the
//! defaults (interval 200 ms, `initial_interval` = the interval, phi 8, `max_interval`
//! 2 s) a dead node is declared in about 0.8 to 1.8 s, under 3 s. chitchat's own
//! default `initial_interval` of 5 s would make it 8 s or more early in a node's life;
//! that is why ours follows the gossip interval. A new node counts as live after about
//! three of its heartbeats were seen (two or three gossip rounds).
//!
//! # Ports
//! chitchat binds the address it is given and never says which port it got, and peers
//! dial the address in the node's identity, fixed before binding. So this module binds
//! the UDP socket itself and hands it to chitchat: `listen_addr` may have port 0, and
//! [`GossipMembership::gossip_addr`] is the address actually bound (what to give the
//! other nodes as a seed). No other process can take the port in between.
//!
//! # Limits
//! - Gossip is plain UDP with no authentication: a process that can reach the gossip
//!   port can announce members, and the placement would send session copies to them.
//!   Keep the gossip port on a private network.
//! - chitchat has no leave message: [`GossipMembership::leave`] publishes
//!   `status=leaving`, keeps gossiping for a few intervals so that the others see it,
//!   then stops. A node that just stops (or crashes) is found by the failure detector.
//! - All the key-values of all nodes travel in one UDP datagram at most (65,507 bytes),
//!   chunked: fine for addresses and zones of hundreds of nodes.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::{Socket, Transport, UdpSocket};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
    ProtocolVersion,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Member, Membership};

const KEY_RPC: &str = "rpc_addr";
const KEY_PEER: &str = "peer_addr";
const KEY_ZONE: &str = "zone";
const KEY_STATUS: &str = "status";
const STATUS_UP: &str = "up";
const STATUS_LEAVING: &str = "leaving";

/// How long deleted keys are kept as tombstones (we never delete keys).
const TOMBSTONE_GRACE: Duration = Duration::from_secs(600);

/// Settings of a [`GossipMembership`]. Start from [`GossipConfig::new`] and change the
/// fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GossipConfig {
    /// This node's name, unique in the cluster (nothing checks it). Default: the
    /// member's RPC address, as text.
    pub node_id: String,
    /// What this node publishes: its RPC and peer addresses and its zone.
    pub me: Member,
    /// Where gossip is received (UDP). Port 0 picks a free port (see
    /// [`GossipMembership::gossip_addr`]).
    pub listen_addr: SocketAddr,
    /// The address the others reach this node's gossip at, if not `listen_addr`
    /// (needed when it is `0.0.0.0` or behind NAT); a port 0 here means the bound
    /// port. Default: `None`.
    pub advertise_addr: Option<SocketAddr>,
    /// Nodes to join through, as `"ip:port"` or `"host:port"` (host names are
    /// resolved again every minute). Empty for the first node. Default: empty.
    pub seeds: Vec<String>,
    /// Nodes gossip only with nodes of the same cluster id. Default: `"scone"`.
    pub cluster_id: String,
    /// How often this node gossips (with up to three live nodes) and beats its
    /// heartbeat. Default: 200 ms.
    pub gossip_interval: Duration,
    /// The failure detector's threshold: a node is dead once the time since its last
    /// heartbeat exceeds this many mean intervals between heartbeats. Higher is slower
    /// to detect and less prone to flapping under load. Default: 8.
    pub phi_threshold: f64,
    /// The interval the failure detector assumes before it has samples (weighted as 5
    /// samples). `None`: the gossip interval (the default). chitchat's own default,
    /// 5 s, would make detection take 8 s and more early in a node's life.
    pub initial_interval: Option<Duration>,
    /// Intervals between heartbeats longer than this are not sampled (a pause does not
    /// inflate the mean). Default: 2 s.
    pub max_interval: Duration,
    /// How long a dead node is remembered (and still gossiped with now and then, in
    /// case it comes back) before it is forgotten. Default: 60 s.
    pub dead_node_grace_period: Duration,
    /// How long [`GossipMembership::leave`] keeps gossiping after it published
    /// `status=leaving`. `None`: three gossip intervals (the default).
    pub leave_wait: Option<Duration>,
    /// This incarnation's generation; it must grow with every restart under the same
    /// `node_id`. `None` (the default): the unix time in milliseconds, strictly
    /// increasing within the process.
    pub generation: Option<u64>,
}

impl GossipConfig {
    /// The defaults, for node `me` receiving gossip on `listen_addr`.
    pub fn new(me: Member, listen_addr: SocketAddr) -> Self {
        Self {
            node_id: me.rpc.to_string(),
            me,
            listen_addr,
            advertise_addr: None,
            seeds: Vec::new(),
            cluster_id: "scone".to_owned(),
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 8.0,
            initial_interval: None,
            max_interval: Duration::from_secs(2),
            dead_node_grace_period: Duration::from_secs(60),
            leave_wait: None,
            generation: None,
        }
    }

    fn check(&self) -> Result<(), GossipError> {
        let wrong = |why: &str| Err(GossipError::Config(why.to_owned()));
        if self.node_id.is_empty() {
            return wrong("node_id is empty");
        }
        if self.cluster_id.is_empty() {
            return wrong("cluster_id is empty");
        }
        if self.gossip_interval.is_zero() {
            return wrong("gossip_interval is zero");
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return wrong("phi_threshold is not a positive number");
        }
        if self
            .initial_interval
            .is_some_and(|interval| interval.is_zero())
        {
            return wrong("initial_interval is zero");
        }
        if self.max_interval.is_zero() {
            return wrong("max_interval is zero");
        }
        Ok(())
    }

    fn failure_detector(&self) -> FailureDetectorConfig {
        FailureDetectorConfig {
            phi_threshold: self.phi_threshold,
            max_interval: self.max_interval,
            initial_interval: self.initial_interval.unwrap_or(self.gossip_interval),
            dead_node_grace_period: self.dead_node_grace_period,
            ..FailureDetectorConfig::default()
        }
    }

    /// The key-values this node starts with.
    fn key_values(&self) -> Vec<(String, String)> {
        let mut key_values = vec![
            (KEY_RPC.to_owned(), self.me.rpc.to_string()),
            (KEY_PEER.to_owned(), self.me.peer.to_string()),
            (KEY_STATUS.to_owned(), STATUS_UP.to_owned()),
        ];
        if let Some(zone) = &self.me.zone {
            key_values.push((KEY_ZONE.to_owned(), zone.clone()));
        }
        key_values
    }
}

/// Why gossip membership could not start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// A setting is out of range.
    #[error("gossip config: {0}")]
    Config(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind the gossip socket on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What failed (chitchat's error, as text).
        reason: String,
    },
    /// chitchat did not start.
    #[error("gossip did not start: {0}")]
    Start(String),
    /// The gossip loop ended with an error (a broken socket, a panic).
    #[error("gossip stopped with an error: {0}")]
    Stopped(String),
}

/// The members of a cluster as gossip finds them: every node publishes its addresses
/// and zone, heartbeats go around, and nodes that stop beating are dropped (see the
/// [module documentation](self)).
///
/// [`members`](Membership::members) is a cheap read of a list kept up to date by a
/// background task. Clones share the node: gossip runs until [`leave`](Self::leave) or
/// [`shutdown`](Self::shutdown) is called on one of them, or the last one is dropped
/// (which is an abrupt stop, like a crash, for the others). Once stopped, the list
/// stays as it was last seen (so requests in flight can still reach the peers).
#[derive(Clone)]
pub struct GossipMembership {
    shared: Arc<Shared>,
}

struct Shared {
    /// The running chitchat node; `None` once stopped.
    node: Mutex<Option<ChitchatHandle>>,
    members: watch::Receiver<Vec<Member>>,
    me: Member,
    node_id: String,
    generation: u64,
    gossip_addr: SocketAddr,
    leave_wait: Duration,
    follower: JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropping the chitchat handle stops its loop; the follower would end with it.
        self.follower.abort();
    }
}

impl std::fmt::Debug for GossipMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipMembership")
            .field("node_id", &self.shared.node_id)
            .field("generation", &self.shared.generation)
            .field("gossip_addr", &self.shared.gossip_addr)
            .field("me", &self.shared.me)
            .finish_non_exhaustive()
    }
}

impl GossipMembership {
    /// Binds the gossip socket and starts gossiping (in the current tokio runtime),
    /// joining through `config.seeds`. The list holds this node alone until the first
    /// gossip round; the others appear over the next few rounds.
    pub async fn start(config: GossipConfig) -> Result<Self, GossipError> {
        config.check()?;
        let socket =
            UdpSocket::open(config.listen_addr)
                .await
                .map_err(|error| GossipError::Bind {
                    addr: config.listen_addr,
                    reason: format!("{error:#}"),
                })?;
        let bound = socket.local_addr().map_err(|error| GossipError::Bind {
            addr: config.listen_addr,
            reason: format!("{error:#}"),
        })?;
        let mut gossip_addr = config.advertise_addr.unwrap_or(bound);
        if gossip_addr.port() == 0 {
            gossip_addr.set_port(bound.port());
        }
        if gossip_addr.ip().is_unspecified() {
            return Err(GossipError::Config(format!(
                "the others cannot reach gossip at {gossip_addr}: set advertise_addr"
            )));
        }
        let generation = config.generation.unwrap_or_else(next_generation);
        let chitchat_id = ChitchatId::new(config.node_id.clone(), generation, gossip_addr);
        let chitchat_config = ChitchatConfig {
            chitchat_id,
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: bound,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: config.failure_detector(),
            marked_for_deletion_grace_period: TOMBSTONE_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(is_member)),
            protocol_version: ProtocolVersion::V0,
        };
        let transport = Bound(Mutex::new(Some(Box::new(socket))));
        let node = spawn_chitchat(chitchat_config, config.key_values(), &transport)
            .await
            .map_err(|error| GossipError::Start(format!("{error:#}")))?;
        let live = node.chitchat().lock().await.live_nodes_watcher();
        let (members_tx, members) = watch::channel(vec![config.me.clone()]);
        let follower = tokio::spawn(follow(live, members_tx, node.termination_watcher()));
        Ok(Self {
            shared: Arc::new(Shared {
                node: Mutex::new(Some(node)),
                members,
                me: config.me,
                node_id: config.node_id,
                generation,
                gossip_addr,
                leave_wait: config.leave_wait.unwrap_or(config.gossip_interval * 3),
                follower,
            }),
        })
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// This incarnation's generation.
    pub fn generation(&self) -> u64 {
        self.shared.generation
    }

    /// What this node publishes.
    pub fn me(&self) -> &Member {
        &self.shared.me
    }

    /// Where the others reach this node's gossip (the port actually bound): the seed
    /// to give them.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.shared.gossip_addr
    }

    /// The member list, told of each change from now on (a node joined, left, died,
    /// or changed its addresses or zone; not on heartbeats): its current list counts
    /// as seen. The channel closes once gossip has stopped.
    pub fn changes(&self) -> watch::Receiver<Vec<Member>> {
        let mut changes = self.shared.members.clone();
        changes.mark_unchanged();
        changes
    }

    /// Leaves the cluster gracefully: publishes `status=leaving` (the others drop this
    /// node as soon as they hear it, without waiting for the failure detector), keeps
    /// gossiping for [`GossipConfig::leave_wait`], then stops. This node drops out of
    /// its own list at once. Nothing happens if gossip has already stopped.
    pub async fn leave(self) -> Result<(), GossipError> {
        let Some(node) = self.take_node() else {
            return Ok(());
        };
        node.with_chitchat(|chitchat| chitchat.self_node_state().set(KEY_STATUS, STATUS_LEAVING))
            .await;
        tokio::time::sleep(self.shared.leave_wait).await;
        stop(node).await
    }

    /// Stops gossiping at once, without telling the others: they find out through the
    /// failure detector, as if this node had crashed. Nothing happens if gossip has
    /// already stopped.
    pub async fn shutdown(self) -> Result<(), GossipError> {
        match self.take_node() {
            Some(node) => stop(node).await,
            None => Ok(()),
        }
    }

    fn take_node(&self) -> Option<ChitchatHandle> {
        self.shared
            .node
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl Membership for GossipMembership {
    fn members(&self) -> Vec<Member> {
        self.shared.members.borrow().clone()
    }
}

async fn stop(node: ChitchatHandle) -> Result<(), GossipError> {
    node.shutdown()
        .await
        .map_err(|error| GossipError::Stopped(format!("{error:#}")))
}

/// chitchat's extra liveness test, applied to every node the failure detector holds
/// live (this one included).
fn is_member(node: &NodeState) -> bool {
    node.get(KEY_STATUS) != Some(STATUS_LEAVING) && node.contains_key(KEY_RPC)
}

/// Keeps `members` up to date with chitchat's live nodes, until chitchat stops (then
/// the list's channel closes).
async fn follow(
    mut live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    members: watch::Sender<Vec<Member>>,
    stopped: impl Future<Output = anyhow::Result<()>>,
) {
    let mut stopped = std::pin::pin!(stopped);
    let mut reported = HashSet::new();
    loop {
        // chitchat's watch starts out empty, and is first set at the end of the first
        // gossip round: until then, the list is this node alone.
        tokio::select! {
            biased;
            changed = live.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            outcome = &mut stopped => {
                // A broken socket or a panic would otherwise only show at shutdown.
                if let Err(error) = outcome {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "gossip stopped: the member list no longer changes"
                    );
                }
                return;
            }
        }
        let next = members_of(live.borrow_and_update().iter(), &mut reported);
        members.send_if_modified(|current| {
            let changed = *current != next;
            if changed {
                *current = next;
            }
            changed
        });
    }
}

/// A node's key-values (a trait so that the tests can build them).
trait Keys {
    fn key(&self, key: &str) -> Option<&str>;
}

impl Keys for NodeState {
    fn key(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

/// The members among live `nodes`: per node id, the highest generation, if its keys
/// parse. Nodes that do not parse are logged the first time they are seen (kept in
/// `reported` while they stay).
fn members_of<'a, K: Keys + 'a>(
    nodes: impl IntoIterator<Item = (&'a ChitchatId, &'a K)>,
    reported: &mut HashSet<ChitchatId>,
) -> Vec<Member> {
    let mut newest: BTreeMap<&str, (&ChitchatId, &K)> = BTreeMap::new();
    for (id, keys) in nodes {
        let entry = newest.entry(&id.node_id).or_insert((id, keys));
        if entry.0.generation_id < id.generation_id {
            *entry = (id, keys);
        }
    }
    let mut unparsable = HashSet::new();
    let mut members = Vec::with_capacity(newest.len());
    for (id, keys) in newest.into_values() {
        match member_of(keys) {
            Ok(member) => members.push(member),
            Err(why) => {
                if !reported.contains(id) {
                    tracing::debug!(node = ?id, %why, "a gossip node is left out of the members");
                }
                unparsable.insert(id.clone());
            }
        }
    }
    *reported = unparsable;
    members
}

/// The member a node's keys describe.
fn member_of(keys: &impl Keys) -> Result<Member, String> {
    let addr = |key: &str| -> Result<SocketAddr, String> {
        let text = keys.key(key).ok_or_else(|| format!("no {key}"))?;
        text.parse()
            .map_err(|error| format!("{key} {text:?}: {error}"))
    };
    Ok(Member {
        rpc: addr(KEY_RPC)?,
        peer: addr(KEY_PEER)?,
        zone: keys.key(KEY_ZONE).map(str::to_owned),
    })
}

/// The unix time in milliseconds, or one more than the last generation handed out in
/// this process if that is not more.
fn next_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

/// A chitchat transport that hands over a socket bound beforehand (so that we know
/// its port). chitchat opens its transport once.
struct Bound(Mutex<Option<Box<dyn Socket>>>);

// What `#[async_trait]` makes of `async fn open(&self, SocketAddr) -> anyhow::Result<..>`,
// written out to spare a dependency.
impl Transport for Bound {
    fn open<'life0, 'async_trait>(
        &'life0 self,
        _listen_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Box<dyn Socket>>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let socket = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        Box::pin(async move {
            socket.ok_or_else(|| anyhow::anyhow!("the gossip socket was opened already"))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    impl Keys for HashMap<&str, &str> {
        fn key(&self, key: &str) -> Option<&str> {
            self.get(key).copied()
        }
    }

    fn id(node: &str, generation: u64, port: u16) -> ChitchatId {
        ChitchatId::new(node, generation, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn keys(rpc: &'static str, peer: &'static str) -> HashMap<&'static str, &'static str> {
        HashMap::from([(KEY_RPC, rpc), (KEY_PEER, peer), (KEY_STATUS, STATUS_UP)])
    }

    #[test]
    fn the_highest_generation_of_a_node_id_wins() {
        let nodes = [
            (id("a", 5, 1), keys("127.0.0.1:10", "127.0.0.1:11")),
            (id("a", 7, 2), keys("127.0.0.1:20", "127.0.0.1:21")),
            (id("a", 6, 3), keys("127.0.0.1:30", "127.0.0.1:31")),
            (id("b", 1, 4), keys("127.0.0.1:40", "127.0.0.1:41")),
        ];
        let members = members_of(nodes.iter().map(|(i, k)| (i, k)), &mut HashSet::new());
        let rpcs: Vec<String> = members.iter().map(|m| m.rpc.to_string()).collect();
        assert_eq!(rpcs, ["127.0.0.1:20", "127.0.0.1:40"]);
    }

    #[test]
    fn nodes_that_do_not_parse_are_left_out_and_remembered_while_they_stay() {
        let mut zoned = keys("127.0.0.1:10", "127.0.0.1:11");
        zoned.insert(KEY_ZONE, "z1");
        let nodes = [
            (id("a", 1, 1), zoned),
            (id("b", 1, 2), keys("not an address", "127.0.0.1:21")),
            (id("c", 1, 3), HashMap::from([(KEY_RPC, "127.0.0.1:30")])),
        ];
        let mut reported = HashSet::new();
        let members = members_of(nodes.iter().map(|(i, k)| (i, k)), &mut reported);
        assert_eq!(
            members,
            [Member {
                rpc: "127.0.0.1:10".parse().unwrap(),
                peer: "127.0.0.1:11".parse().unwrap(),
                zone: Some("z1".into()),
            }]
        );
        assert_eq!(reported, HashSet::from([id("b", 1, 2), id("c", 1, 3)]));
        let members = members_of(nodes[..2].iter().map(|(i, k)| (i, k)), &mut reported);
        assert_eq!(members.len(), 1);
        assert_eq!(reported, HashSet::from([id("b", 1, 2)]));
    }

    #[test]
    fn generations_increase_within_the_process() {
        let first = next_generation();
        let second = next_generation();
        assert!(second > first);
    }

    #[test]
    fn the_defaults_detect_failures_from_the_gossip_interval() {
        let me = Member {
            rpc: "127.0.0.1:1".parse().unwrap(),
            peer: "127.0.0.1:2".parse().unwrap(),
            zone: None,
        };
        let mut config = GossipConfig::new(me, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.node_id, "127.0.0.1:1");
        config.gossip_interval = Duration::from_millis(150);
        let detector = config.failure_detector();
        assert_eq!(detector.initial_interval, Duration::from_millis(150));
        assert_eq!(detector.max_interval, Duration::from_secs(2));
        assert!(config.check().is_ok());
        config.gossip_interval = Duration::ZERO;
        assert!(matches!(config.check(), Err(GossipError::Config(_))));
    }
}
