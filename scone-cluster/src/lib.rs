//! `scone-cluster`: sessions held by a cluster of servers instead of by the client. Each
//! new version of a session's SCONE is copied to k peers **before the reply leaves**
//! (seed 002, fig. 9), and the reply carries a routing token in its place (seed 003):
//! the primary that served it and the secondaries that hold a copy.
//!
//! It plugs into the same serve pipeline as every other placement
//! (`scone_rpc::server::placement`): the cart's handler, unchanged, runs with
//! `SconeLayer::with_placement(ClusterPlacement::new(...))`.
//!
//! ```no_run
//! # async fn run(key: scone::SigningKey) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use scone::KeyRing;
//! use scone_cluster::{
//!     ClusterConfig, ClusterPlacement, Member, Replica, SessionStore, StaticMembership,
//!     TcpTransport,
//! };
//! use scone_rpc::SconeLayer;
//!
//! let service = scone::ServiceId::new("cart")?;
//! let me = Member { rpc: "10.0.0.1:7001".parse()?, peer: "10.0.0.1:7101".parse()?, zone: None };
//! let peers = StaticMembership::new(vec![me.clone() /* , the other nodes */]);
//! let keys = KeyRing::for_service(service.clone(), [key.public_key()])?;
//! let replica = Replica::new(SessionStore::new(1_000_000), keys);
//! let placement = ClusterPlacement::new(
//!     me,
//!     replica.clone(),
//!     TcpTransport::new(Duration::from_millis(500)),
//!     peers,
//!     ClusterConfig::default(),
//! );
//! let layer = SconeLayer::new(service, key)?.with_placement(placement);
//! // Serve `layer.wrap(...)` to clients, and `replica` to peers:
//! let peer_listener = tokio::net::TcpListener::bind("10.0.0.1:7101").await?;
//! tokio::spawn(scone_cluster::serve_peers(peer_listener, replica, std::future::pending::<()>()));
//! # Ok(()) }
//! ```
//!
//! # What it guarantees
//! - **Replicate before reply**: a reply whose SCONE changed leaves only once k peers
//!   acknowledged the new version (or, if set, with a token saying fewer did). A client
//!   that got a reply can lose up to k nodes and keep its state.
//! - **Versions only go forward, along one line**, on every node: a copy is kept only
//!   if it verifies under the service's keys and descends from what the node holds
//!   (each copy carries its [`Lineage`]), so a process outside the cluster cannot plant
//!   state, a stale node that comes back cannot overwrite newer state, and a line forked
//!   by an attempt the client gave up on cannot replace the acknowledged one (as long as
//!   it forked within the last [`lineage::LINEAGE_DEPTH`] versions; the lineage is
//!   metadata peers send, not signed: peers are trusted to send it honestly). Of two
//!   lines made from one acknowledged version, the one the client's later request made
//!   wins ([`Ballot`]: the client numbers its attempts in the token), so a node that
//!   ran an attempt late (paused with the request in its socket) cannot replace what the
//!   client's retry was acknowledged on. A node that served a request from an old
//!   version finds out at commit (a peer, or itself, holds newer) and the call is
//!   refused (`superseded`), and the node takes the newer version so the next call is
//!   served from it.
//! - **Failover**: a node that gets a token for a session it does not hold (or holds
//!   older) fetches it from the owners the token names, then from every member, and
//!   serves as the new primary, copying the next version to new secondaries.
//! - **Reads show only what is kept**: a read served from a later version than the one
//!   its token names (another request's change, or one a refused commit left on this
//!   node) first copies that version to k peers, as a commit would
//!   ([`Placement::confirm_read`](scone_rpc::server::placement::Placement::confirm_read)),
//!   so no reply shows a change the cluster may drop for another line afterwards.
//!
//! **Clients** reach the cluster through a [`ClusterChannel`] under a thin
//! `SconeClient`: it keeps each session's token, calls the primary, and fails over to
//! the secondaries, then to any node it knows.
//!
//! **Membership** comes from gossip ([`GossipMembership`], on chitchat: heartbeats and
//! phi-accrual failure detection; a dead node drops out in about 1 to 2 s by default),
//! or a fixed list ([`StaticMembership`]). A [`ClusterNode`] wires a node together and,
//! leaving gracefully, first copies its sessions to other members.
//!
//! **One request at a time per session** on the node that serves it (a lock held from
//! load to reply, bounded by the request's deadline: `busy` past it), so requests that
//! share a session follow each other instead of forking it. A handler can **end** its
//! session (`end_session`): every member drops it.
//!
//! **Copies made again**: when a member is lost, every node copies the sessions it
//! holds to k live members ([`ClusterPlacement::keep_copies`], run by a [`ClusterNode`]),
//! without waiting for requests; a node that joins is a candidate like any other (10,000
//! sessions in about 0.3 s: `cargo bench -p scone-cluster --bench rereplication`). A
//! peer that holds the very version sent knows it by its digest and answers without a
//! second signature check, so the copies holders send each other cost little.
//!
//! **Deltas**: with [`Replica::with_deltas`] (`NodeConfig::deltas`), a peer the token
//! names as holding the version before gets only the fields the derive macro saw change,
//! with the new claims and signature; it applies them, rebuilds the SCONE and verifies
//! it as it would a whole copy. A peer out of step gets the whole copy. For a 4 KiB
//! state with one counter changed: 158 B per update against 4,253 B
//! (`cargo bench -p scone-cluster --bench deltas`).
//!
//! **Placement**: secondaries go to other zones first, or to the members an operator
//! pins ([`ClusterConfig::pinned_secondaries`]). **Batching** ([`ClusterConfig::batching`],
//! off by default) replies before the copies are made and sends them every few ms, with
//! a failure window: see [`Batching`]. Under load, copies to one peer that wait while a
//! message is on the wire go together in the next, batching or not.
//!
//! Not covered yet: TLS on peer links, and authentication of gossip (anyone who reaches the gossip port can
//! announce a member). With a cluster secret (`NodeConfig::secret`, `cart-server
//! --cluster-secret-file`) peer links are authenticated and every message on them is
//! sealed. Peers verify every SCONE they take, whatever the link: by its signature, or,
//! on a node given the service's signing key (`NodeConfig::issuer_key`, as `cart-server`
//! sets it), by its issuer tag, a keyed hash as strong for a holder of the key and about
//! 35 µs cheaper on each commit's secondary. Keep the ports on a private network.
//!
//! # Layout
//! - [`session`]: [`SessionId`], [`RoutingToken`].
//! - [`lineage`]: [`VersionId`], [`Lineage`]: which versions a copy descends from.
//! - [`store`]: [`SessionStore`], the newest version of each session on one node.
//! - [`replica`]: [`Replica`], what a node does with copies and fetches from peers.
//! - [`membership`]: [`Membership`], [`Member`], [`StaticMembership`].
//! - [`membership::gossip`]: [`GossipMembership`], membership by gossip (chitchat).
//! - [`transport`]: [`PeerTransport`]; over TCP ([`TcpTransport`], [`serve_peers`]) and
//!   in memory with faults ([`transport::memory`]).
//! - [`placement`]: [`ClusterPlacement`], the `Placement` of a cluster node.
//! - [`stats`]: [`ClusterStats`], a node's counters, and [`NodeMetrics`] for `/metrics`.
//! - [`client`]: [`ClusterChannel`], the client's way in: token, primary, failover.
//! - [`node`]: [`ClusterNode`], a node's pieces wired together, and its graceful leave.

#![deny(missing_docs)]

pub mod client;
pub mod lineage;
mod locks;
pub mod membership;
pub mod node;
pub mod placement;
pub mod replica;
pub mod session;
pub mod stats;
pub mod store;
pub mod transport;

pub use crate::client::{ClusterChannel, ClusterClientConfig};
pub use crate::lineage::{Ballot, Lineage, VersionId};
pub use crate::locks::SessionLease;
pub use crate::membership::gossip::{GossipConfig, GossipError, GossipMembership};
pub use crate::membership::{Member, Membership, StaticMembership};
pub use crate::node::{ClusterNode, NodeConfig};
pub use crate::placement::{
    Batching, ClusterConfig, ClusterPlacement, HandOver, Replicas, Shortfall,
};
pub use crate::replica::{
    CopyItem, DeltaCopy, IssuerKeyError, Replica, ReplicaRefusal, SessionCopy,
};
pub use crate::session::{RoutingToken, SessionId, TokenError};
pub use crate::stats::{ClusterStats, NodeMetrics};
pub use crate::store::{Held, SessionStore, Stored};
pub use crate::transport::tcp::{serve_peers, serve_peers_with_secret, TcpTransport};
pub use crate::transport::{LinkStats, PeerError, PeerTransport};
