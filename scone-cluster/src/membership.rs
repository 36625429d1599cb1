//! Who is in the cluster: each member's addresses and zone.
//!
//! [`Membership`] is what the placement asks; [`StaticMembership`] is a fixed list (for
//! tests and small fixed clusters); [`gossip::GossipMembership`] finds the members by
//! gossip (heartbeats, failure detection) and implements the same trait.

pub mod gossip;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// Where clients call it: the address routing tokens name.
    pub rpc: SocketAddr,
    /// Where its peers send copies and fetches.
    pub peer: SocketAddr,
    /// Its zone or machine label: secondaries go to another zone when one is up.
    pub zone: Option<String>,
}

/// The live members of a cluster, as this node sees them.
pub trait Membership: Send + Sync + 'static {
    /// Every member believed live, this node included.
    fn members(&self) -> Vec<Member>;

    /// The member with client address `rpc`, if live.
    fn by_rpc(&self, rpc: SocketAddr) -> Option<Member> {
        self.members().into_iter().find(|member| member.rpc == rpc)
    }
}

/// A membership whose list is set by hand. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct StaticMembership {
    members: Arc<RwLock<Vec<Member>>>,
}

impl StaticMembership {
    /// A membership of `members`.
    pub fn new(members: Vec<Member>) -> Self {
        Self {
            members: Arc::new(RwLock::new(members)),
        }
    }

    /// Replaces the list (a node joined or left).
    pub fn set(&self, members: Vec<Member>) {
        *self
            .members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = members;
    }
}

impl Membership for StaticMembership {
    fn members(&self) -> Vec<Member> {
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
