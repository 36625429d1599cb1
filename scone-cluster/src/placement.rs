//! [`ClusterPlacement`]: sessions held by the cluster, each new version copied to k
//! peers before the reply, found again by the routing token; and copies
//! made again when a member is lost.

mod batch;
mod recovery;

pub use self::batch::Batching;

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::join_all;
use scone::{Scone, ServiceId};
use scone_rpc::server::placement::{Commit, Committed, Placement, PlacementError};

use crate::lineage::{Ballot, Lineage, VersionId};
use crate::locks::{SessionLease, SessionLocks};
use crate::membership::{Member, Membership};
use crate::replica::{DeltaCopy, Replica, ReplicaRefusal, SessionCopy};
use crate::session::{RoutingToken, SessionId};
use crate::stats::{bump, ClusterStats};
use crate::store::{Held, Stored};
use crate::transport::{PeerError, PeerTransport};

/// How many peers get a copy of each new version before the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicas {
    /// This many (k); the cluster needs k + 1 nodes up to reply.
    Count(usize),
    /// Every other member: the seeds' grapevine mode, where every node keeps every
    /// session.
    All,
}

impl Replicas {
    /// The copies to make, with `peers` other live members.
    fn wanted(self, peers: usize) -> usize {
        match self {
            Replicas::Count(count) => count,
            Replicas::All => peers,
        }
    }
}

/// What a node does when fewer than k peers acknowledged a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shortfall {
    /// Refuse the call with `not-replicated` (the default): the client is never told a
    /// change was made that fewer than k + 1 nodes hold. The peers that did take the
    /// copy keep it, so a retry may find the change made (the call's retry advice says
    /// it may have run).
    #[default]
    Refuse,
    /// Reply anyway, the token saying how many copies were made
    /// ([`RoutingToken::is_degraded`]).
    ReplyDegraded,
}

/// Settings of a [`ClusterPlacement`].
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Copies made before each reply (default 1).
    pub replicas: Replicas,
    /// When fewer are acknowledged.
    pub shortfall: Shortfall,
    /// Whether replies also carry the SCONE (default `false`: the client keeps the
    /// token only).
    pub reply_carries_scone: bool,
    /// Members (by client address) that take this node's copies first, whenever they
    /// are up, ahead of zones and of the order per session (default none): an operator's
    /// choice of where a node's secondaries live (the rack next door, a bigger machine).
    pub pinned_secondaries: Vec<SocketAddr>,
    /// Batched replication: reply first, copy later in batches (default `None`:
    /// synchronous, every copy made before the reply). Faster, with a failure window:
    /// see [`Batching`] and the `batch` module's docs.
    pub batching: Option<Batching>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            replicas: Replicas::Count(1),
            shortfall: Shortfall::Refuse,
            reply_carries_scone: false,
            pinned_secondaries: Vec::new(),
            batching: None,
        }
    }
}

/// What a copy does when a peer holds a line this node does not take: see
/// `Inner::replicate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OtherLine {
    /// The commit is refused (`superseded`).
    Refuse,
    /// The next candidate gets the copy.
    Skip,
}

/// What [`ClusterPlacement::hand_over`] or [`ClusterPlacement::rereplicate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandOver {
    /// Sessions now held by k other members.
    pub handed_over: usize,
    /// Sessions that fewer than k other members acknowledged.
    pub short: usize,
}

/// The cluster placement of one node: plug it into the server layer with
/// `SconeLayer::with_placement`, and the same handler's sessions live in the cluster.
///
/// **Commit** (each SCONE the node mints, before the reply leaves):
/// 1. if this node holds a version of the session the new one does not descend from,
///    refuse (`superseded`): the request was served from an old version (unless the
///    held one is of a line the token's acknowledged version is not on: that line is
///    replaced);
/// 2. copy it to k peers at once, chosen in this order: the operator's
///    [pinned secondaries](ClusterConfig::pinned_secondaries), then the secondaries the
///    request's token named (they hold the version before), then members of other zones than
///    this node's, then the rest, each group in an order fixed per session (rendezvous
///    hashing); a peer that fails is replaced by the next candidate. A peer the token
///    names as holding the version before gets only the delta of the changed fields,
///    when the replica [takes deltas](Replica::with_deltas) (the whole copy if it is
///    out of step);
/// 3. a peer that holds a newer version (or one of another line that wins) refuses the
///    copy: then this node was behind, and the call is refused (`superseded`); this
///    node takes that peer's version, so the next call is served from it (read repair);
/// 4. fewer than k acknowledgements: see [`Shortfall`];
/// 5. keep it on this node, and answer with the routing token: this node as primary,
///    the peers that acknowledged as secondaries.
///
/// With [`ClusterConfig::batching`], steps 2 to 4 come after the reply: see
/// [`Batching`].
///
/// **One request at a time per session**: a request that carries a token holds its
/// session's lock on this node from load until its reply is made; other requests on
/// the session wait for it, each up to its own deadline (then `busy`, safe to retry).
/// So concurrent requests sharing a session are serialized at the node they reach (the
/// primary, when they follow the token), each served from the version the one before
/// made, none refused for having started from the same version. The lock is a lease:
/// it goes with the request's future, which tarpc drops at the request's deadline, so a
/// holder that hangs blocks the others no longer than that.
///
/// **Load** (a request that carries a token and no SCONE): this node's copy if it is
/// the very version the token names (same version, same digest) or a later version of
/// its line (its [`Lineage`] names the token's version, or is too short to tell);
/// otherwise the newest such copy from the owners the token names that are still members, and
/// failing those from every other member (the seeds' broadcast). A copy of the same
/// version with another digest (left by an attempt the client gave up on) is not taken
/// for it. What peers send is verified and kept here, and this
/// node serves as the new primary. No copy that new anywhere: `session-unavailable`,
/// never an older state.
pub struct ClusterPlacement<T, M> {
    inner: Arc<Inner<T, M>>,
}

struct Inner<T, M> {
    /// This node.
    me: Member,
    /// This node's sessions, and how copies are checked.
    replica: Replica,
    /// Calls to peers.
    transport: T,
    /// Who else is there.
    membership: M,
    config: ClusterConfig,
    counters: crate::stats::Counters,
    /// Sessions being served here, one request at a time.
    locks: Arc<SessionLocks>,
    /// Copies waiting to be sent, when batching.
    batch: Arc<batch::Batch>,
    /// Whether the batch sender runs (started by the first batched commit).
    batch_sender: std::sync::OnceLock<()>,
}

impl<T, M> Clone for ClusterPlacement<T, M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, M> std::fmt::Debug for ClusterPlacement<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPlacement")
            .field("me", &self.inner.me)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<T: PeerTransport, M: Membership> ClusterPlacement<T, M> {
    /// The placement of node `me`, keeping sessions through `replica` (its store),
    /// reaching peers over `transport`.
    pub fn new(
        me: Member,
        replica: Replica,
        transport: T,
        membership: M,
        config: ClusterConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                me,
                replica,
                transport,
                membership,
                config,
                counters: Default::default(),
                locks: Arc::default(),
                batch: Arc::default(),
                batch_sender: std::sync::OnceLock::new(),
            }),
        }
    }

    /// This node's sessions and how it checks copies (serve it to peers).
    pub fn replica(&self) -> &Replica {
        &self.inner.replica
    }

    /// This node.
    pub fn me(&self) -> &Member {
        &self.inner.me
    }

    /// The live members this node sees, itself included.
    pub fn members(&self) -> Vec<Member> {
        self.inner.membership.members()
    }

    /// The counters now (copies this node received are counted by its [`Replica`]).
    pub fn stats(&self) -> ClusterStats {
        let mut stats = self.inner.replica.counters().snapshot();
        let own = self.inner.counters.snapshot();
        stats.commits = own.commits;
        stats.replications = own.replications;
        stats.acks = own.acks;
        stats.delta_copies = own.delta_copies;
        stats.delta_fallbacks = own.delta_fallbacks;
        stats.copy_bytes = own.copy_bytes;
        stats.not_replicated = own.not_replicated;
        stats.superseded = own.superseded;
        stats.local_loads = own.local_loads;
        stats.takeovers = own.takeovers;
        stats.unavailable = own.unavailable;
        stats.ended = own.ended;
        stats.busy = own.busy;
        stats.recopy_passes = own.recopy_passes;
        stats.recopy_short = own.recopy_short;
        stats.too_late = own.too_late;
        stats.confirmed_reads = own.confirmed_reads;
        let links = self.inner.transport.link_stats();
        stats.peer_links_opened = links.opened;
        stats.peer_links_failed = links.failed;
        stats.copy_messages = links.copy_messages;
        stats
    }
}

impl<T: PeerTransport, M: Membership> Inner<T, M> {
    /// Keeps `minted` on this node, the commit's last step.
    fn keep_minted(
        &self,
        (minted, id): (&Scone, VersionId),
        lineage: Lineage,
        ballot: Option<Ballot>,
    ) -> Result<(), PlacementError> {
        let held = Held::with_id(minted.clone(), id, lineage).with_ballot(ballot);
        match self.replica.keep_held(held) {
            Ok(()) => Ok(()),
            Err(ReplicaRefusal::Full) => Err(PlacementError::Full(format!("node {}", self.me.rpc))),
            Err(refusal) => {
                bump(&self.counters.superseded);
                Err(PlacementError::Superseded(refusal.to_string()))
            }
        }
    }

    /// The reply's side of a commit of `minted` (version `id`): its routing token.
    fn committed(
        &self,
        minted: &Scone,
        id: VersionId,
        secondaries: Vec<SocketAddr>,
        wanted: usize,
    ) -> Committed {
        bump(&self.counters.commits);
        let token = self.token(minted, id, secondaries, wanted);
        Committed::held(token.encode(), self.config.reply_carries_scone)
    }

    /// The routing token of version `id` of `scone`'s session: this node as primary,
    /// `secondaries` holding copies.
    fn token(
        &self,
        scone: &Scone,
        id: VersionId,
        secondaries: Vec<SocketAddr>,
        wanted: usize,
    ) -> RoutingToken {
        RoutingToken {
            session: SessionId::of(scone),
            version: id.version,
            digest: id.digest,
            primary: self.me.rpc,
            secondaries,
            required: u16::try_from(wanted).unwrap_or(u16::MAX),
            attempt: 0,
        }
    }

    /// The lineage of a SCONE minted from `previous`: its version, then the versions it
    /// descends from as this node holds them (none known if it holds another).
    fn lineage_after(
        &self,
        session: &SessionId,
        previous: Option<&Scone>,
    ) -> (Option<VersionId>, Lineage) {
        let Some(previous) = previous else {
            return (None, Lineage::default());
        };
        let held = self.replica.store().get(session);
        // Usually the very version held (it was served from here): its digest is known,
        // and comparing the bytes costs less than hashing them.
        let (parent, parent_lineage) = match held {
            Some(held) if held.scone().encoded() == previous.encoded() => {
                (held.id(), held.into_parts().1)
            }
            held => {
                let parent = VersionId::of(previous);
                let lineage = held
                    .filter(|held| held.id() == parent)
                    .map(|held| held.into_parts().1)
                    .unwrap_or_default();
                (parent, lineage)
            }
        };
        (Some(parent), Lineage::after(parent, &parent_lineage))
    }

    /// The peers to copy `session` to, best first (see [`ClusterPlacement`]).
    fn candidates(&self, session: &SessionId, token: Option<&RoutingToken>) -> Vec<Member> {
        let mut others: Vec<Member> = self
            .membership
            .members()
            .into_iter()
            .filter(|member| member.rpc != self.me.rpc)
            .collect();
        let was_secondary =
            |member: &Member| token.is_some_and(|token| token.secondaries.contains(&member.rpc));
        let same_zone = |member: &Member| self.me.zone.is_some() && member.zone == self.me.zone;
        let pinned = |member: &Member| self.config.pinned_secondaries.contains(&member.rpc);
        others.sort_by_key(|member| {
            (
                !pinned(member),
                !was_secondary(member),
                same_zone(member),
                rendezvous(session, member.rpc),
            )
        });
        others
    }

    /// Copies `copy` to `wanted` of `candidates`, replacing those that fail; the
    /// client addresses of those that acknowledged. Those of `delta`'s nodes (known to
    /// hold the version before) are sent the delta first.
    ///
    /// A peer that refuses the copy for a newer version, or another line, makes this
    /// node take its version if it can (read repair), and then the copy is superseded.
    /// If it cannot: a commit (`other_line` [`OtherLine::Refuse`]) is refused all the
    /// same, fast, so the client retries (from the node's newest version, or elsewhere);
    /// a copy made again ([`OtherLine::Skip`]) goes to the next candidate instead.
    async fn replicate(
        &self,
        copy: &SessionCopy,
        delta: Option<(&DeltaCopy, &[SocketAddr])>,
        candidates: &[Member],
        wanted: usize,
        other_line: OtherLine,
    ) -> Result<Vec<SocketAddr>, PlacementError> {
        let mut acknowledged = Vec::with_capacity(wanted);
        let mut next = 0;
        while acknowledged.len() < wanted && next < candidates.len() {
            let batch =
                &candidates[next..(next + wanted - acknowledged.len()).min(candidates.len())];
            next += batch.len();
            for _ in batch {
                bump(&self.counters.replications);
            }
            let calls = batch.iter().map(|member| {
                let delta = delta
                    .filter(|(_, in_step)| in_step.contains(&member.rpc))
                    .map(|(delta, _)| delta);
                self.send(member, copy, delta)
            });
            for (member, result) in batch.iter().zip(join_all(calls).await) {
                match result {
                    Ok(()) => {
                        bump(&self.counters.acks);
                        acknowledged.push(member.rpc);
                    }
                    Err(PeerError::Refused {
                        refusal: refusal @ (ReplicaRefusal::Stale | ReplicaRefusal::Forked),
                        ..
                    }) => {
                        // This node was behind: take the peer's version, so that the
                        // next call is served from it rather than refused the same way.
                        // Boxed, as every path a commit rarely takes: the commit's future
                        // is made (and moved) on every request, and is as large as the
                        // largest thing it awaits.
                        let repaired = Box::pin(self.repair_from(member, copy)).await;
                        if repaired || other_line == OtherLine::Refuse {
                            return Err(PlacementError::Superseded(format!(
                                "node {}: {refusal}",
                                member.rpc
                            )));
                        }
                        // The peer holds a line this node does not take: it cannot hold
                        // this copy, so another candidate does.
                        tracing::warn!(me = %self.me.rpc, peer = %member.rpc, copy = %copy.describe(), %refusal, "a peer holds another line of a session");
                    }
                    Err(error) => {
                        tracing::warn!(me = %self.me.rpc, copy = %copy.describe(), %error, "a peer did not take a copy");
                    }
                }
            }
        }
        Ok(acknowledged)
    }

    /// [`replicate`](Self::replicate) for a reply (a commit's, or a read's): refused
    /// (`superseded`) when a peer holds a line this node does not take, and refused
    /// (`not-replicated`) with fewer than `wanted` copies unless the cluster replies
    /// degraded. The peers that took the copy.
    async fn copy_before_reply(
        &self,
        copy: &SessionCopy,
        delta: Option<(&DeltaCopy, &[SocketAddr])>,
        candidates: &[Member],
        wanted: usize,
    ) -> Result<Vec<SocketAddr>, PlacementError> {
        let replicated = self
            .replicate(copy, delta, candidates, wanted, OtherLine::Refuse)
            .await;
        if let Err(PlacementError::Superseded(_)) = &replicated {
            bump(&self.counters.superseded);
        }
        let secondaries = replicated?;
        if secondaries.len() < wanted && self.config.shortfall == Shortfall::Refuse {
            bump(&self.counters.not_replicated);
            return Err(PlacementError::NotReplicated {
                acknowledged: secondaries.len(),
                required: wanted,
            });
        }
        Ok(secondaries)
    }

    /// Sends `member` the `delta` if there is one, and the whole `copy` if there is none
    /// or it is refused as out of step.
    async fn send(
        &self,
        member: &Member,
        copy: &SessionCopy,
        delta: Option<&DeltaCopy>,
    ) -> Result<(), PeerError> {
        let sent = |bytes: usize| {
            self.counters
                .copy_bytes
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed)
        };
        if let Some(delta) = delta {
            sent(delta.payload_len());
            match self
                .transport
                .replicate_delta(member.peer, delta.clone())
                .await
            {
                Err(PeerError::Refused {
                    refusal: ReplicaRefusal::OutOfStep,
                    ..
                }) => bump(&self.counters.delta_fallbacks),
                done => {
                    if done.is_ok() {
                        bump(&self.counters.delta_copies);
                    }
                    return done;
                }
            }
        }
        sent(copy.scone.len());
        self.transport.replicate(member.peer, copy.clone()).await
    }

    /// Keeps `member`'s copy of the session `refused` (a copy it would not take) belongs
    /// to, if it verifies and descends from this node's (or wins over it: see
    /// [`SessionStore::put`](crate::SessionStore::put)); whether it did (or already held
    /// it).
    async fn repair_from(&self, member: &Member, refused: &SessionCopy) -> bool {
        let Some(refused_scone) = self.replica.verified(refused.scone.clone()) else {
            return false;
        };
        let session = SessionId::of(&refused_scone);
        let newer = self
            .fetch_newest(std::slice::from_ref(member), &session, |_| true)
            .await;
        let Some(newer) = newer else {
            return false;
        };
        let version = newer.id();
        // The request that made the peer's version decides against this node's line
        // (the refused copy's, when the peer does not know it).
        let ballot = newer.ballot().or(refused.ballot);
        let (scone, lineage) = newer.into_parts();
        match self.replica.store().put(scone, lineage, ballot) {
            Stored::Kept | Stored::Same => {
                tracing::info!(me = %self.me.rpc, peer = %member.rpc, %session, %version, "took a peer's version of a session");
                true
            }
            refusal => {
                tracing::info!(me = %self.me.rpc, peer = %member.rpc, %session, %version, ?refusal, "kept this node's version of a session over a peer's");
                false
            }
        }
    }

    /// The newest copy of `session` that `from` hold, that verifies and that `wanted`
    /// accepts.
    async fn fetch_newest(
        &self,
        from: &[Member],
        session: &SessionId,
        wanted: impl Fn(&Held) -> bool,
    ) -> Option<Held> {
        let calls = from
            .iter()
            .map(|member| self.transport.fetch(member.peer, session.clone()));
        join_all(calls)
            .await
            .into_iter()
            .filter_map(|answer| match answer {
                Ok(found) => found,
                Err(error) => {
                    tracing::debug!(me = %self.me.rpc, %error, "a peer did not answer a fetch");
                    None
                }
            })
            .filter_map(|copy| {
                let scone = self.replica.verified(copy.scone)?;
                let (lineage, ballot) = (copy.lineage, copy.ballot);
                lineage
                    .is_valid_for(scone.version())
                    .then(|| Held::new(scone, lineage).with_ballot(ballot))
            })
            .filter(|held| &SessionId::of(held.scone()) == session && wanted(held))
            .max_by_key(|held| held.scone().version())
    }
}

impl<T: PeerTransport, M: Membership> Placement for ClusterPlacement<T, M> {
    /// The session's lock on this node, for requests that carry a token.
    type Lease = Option<SessionLease>;

    async fn load(
        &self,
        service: &ServiceId,
        token: &[u8],
        deadline: std::time::Instant,
    ) -> Result<(Option<Scone>, Self::Lease), PlacementError> {
        let inner = &*self.inner;
        let token = RoutingToken::decode(token)
            .map_err(|error| PlacementError::BadToken(error.to_string()))?;
        if &token.session.service != service {
            let detail = format!("the token is for {}", token.session.service);
            return Err(PlacementError::BadToken(detail));
        }
        let session = &token.session;
        // One request of a session at a time: the next one is served from this one's
        // version, rather than from the same one and refused at commit.
        let Some(lease) = inner.locks.lock(session, deadline).await else {
            bump(&inner.counters.busy);
            return Err(PlacementError::Busy(
                "other requests on the session held it past this one's deadline".into(),
            ));
        };
        let lease = Some(lease);
        if inner.replica.store().is_ended(session) {
            // Ended here: the handler starts a new session.
            return Ok((None, lease));
        }
        if let Some(held) = inner.replica.store().get(session) {
            if token.is_served_by(held.id(), held.lineage()) {
                bump(&inner.counters.local_loads);
                return Ok((Some(held.into_parts().0), lease));
            }
        }
        // The owners the token names first, then everyone else.
        let members = inner.membership.members();
        let (owners, rest): (Vec<Member>, Vec<Member>) = members
            .into_iter()
            .filter(|member| member.rpc != inner.me.rpc)
            .partition(|member| token.owners().any(|owner| owner == member.rpc));
        let served = |held: &Held| token.is_served_by(held.id(), held.lineage());
        // Boxed: this path is rare (a takeover), and the load's future, made on every
        // request, would otherwise be as large as it.
        let mut found = Box::pin(inner.fetch_newest(&owners, session, served)).await;
        if found.is_none() {
            tracing::debug!(me = %inner.me.rpc, %session, "the owners do not have the session: asking every member");
            found = Box::pin(inner.fetch_newest(&rest, session, served)).await;
        }
        let Some((scone, lineage)) = found.map(Held::into_parts) else {
            bump(&inner.counters.unavailable);
            tracing::info!(me = %inner.me.rpc, %session, token = %token.version_id(), "no live node holds the session's version");
            return Err(PlacementError::Unavailable(format!(
                "no live node holds version {} of the session",
                token.version
            )));
        };
        // Kept here too: this node now serves the session (and its commit finds the
        // lineage here). Another node may have kept a newer one meanwhile; then the
        // commit finds out.
        let _ = inner
            .replica
            .keep(scone.clone(), lineage, Some(token.ballot()));
        bump(&inner.counters.takeovers);
        tracing::debug!(me = %inner.me.rpc, %session, version = scone.version(), "fetched a session from a peer");
        Ok((Some(scone), lease))
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<Committed, PlacementError> {
        let inner = &*self.inner;
        let minted = commit.minted;
        let session = SessionId::of(minted);
        let token_in = commit
            .token
            .and_then(|bytes| RoutingToken::decode(bytes).ok())
            .filter(|token| token.session == session);
        let ballot = token_in.as_ref().map(RoutingToken::ballot);
        let (parent, lineage) = inner.lineage_after(&session, commit.previous);
        let store = inner.replica.store();
        let minted_id = VersionId::of(minted);
        match store.admits(&session, minted_id, &lineage, ballot) {
            Stored::Kept => {}
            _ => {
                bump(&inner.counters.superseded);
                let held = store.version(&session).unwrap_or_default();
                return Err(PlacementError::Superseded(format!(
                    "this node holds version {held}, and the request was served from another"
                )));
            }
        }
        // A request whose client gave up (its deadline passed: say this node was paused or
        // slow) may be running again elsewhere from the same version: making its change
        // durable now would fork the session. It is dropped instead.
        if std::time::Instant::now() >= commit.deadline {
            bump(&inner.counters.too_late);
            return Err(PlacementError::Busy(
                "the request's deadline passed before its change was copied".into(),
            ));
        }
        let candidates = inner.candidates(&session, token_in.as_ref());
        let wanted = inner.config.replicas.wanted(candidates.len());
        if inner.config.batching.is_some() {
            let made = (minted, minted_id, lineage, ballot);
            return self.commit_batched(made, candidates, wanted);
        }
        let copy = SessionCopy {
            scone: minted.encoded().to_vec(),
            lineage: lineage.clone(),
            ballot,
        };
        // The token's owners held the version this one was made from: they get a delta.
        let delta = commit
            .delta
            .zip(parent)
            .filter(|_| inner.replica.applies_deltas() && !minted.is_sealed())
            .map(|(delta, parent)| DeltaCopy::new(minted, parent, delta, ballot));
        let in_step: Vec<SocketAddr> = token_in
            .as_ref()
            .map(|token| token.owners().collect())
            .unwrap_or_default();
        let delta = delta.as_ref().map(|delta| (delta, in_step.as_slice()));
        let secondaries = inner
            .copy_before_reply(&copy, delta, &candidates, wanted)
            .await?;
        // Kept here last: a refused commit leaves this node as it was.
        inner.keep_minted((minted, minted_id), lineage, ballot)?;
        Ok(inner.committed(minted, minted_id, secondaries, wanted))
    }

    /// A read served from the version its token names needs nothing: that version was
    /// committed before the client was acknowledged. A read served from a later one (a
    /// change the client has not seen, committed for another request, or left on this
    /// node by a commit that was refused) first has that version copied to k peers, as a
    /// commit would, so that no reply shows a change the cluster could drop for another
    /// line afterwards; the reply's token then names it.
    async fn confirm_read(
        &self,
        read: &Scone,
        token: &[u8],
        deadline: std::time::Instant,
    ) -> Result<Option<Box<[u8]>>, PlacementError> {
        let inner = &*self.inner;
        let token = RoutingToken::decode(token)
            .map_err(|error| PlacementError::BadToken(error.to_string()))?;
        let read_id = VersionId::of(read);
        if read_id == token.version_id() {
            return Ok(None);
        }
        if std::time::Instant::now() >= deadline {
            bump(&inner.counters.too_late);
            return Err(PlacementError::Busy(
                "the request's deadline passed before the version it read was copied".into(),
            ));
        }
        let session = SessionId::of(read);
        let Some(held) = inner
            .replica
            .store()
            .get(&session)
            .filter(|held| held.id() == read_id)
        else {
            bump(&inner.counters.superseded);
            return Err(PlacementError::Superseded(
                "this node no longer holds the version the request read".into(),
            ));
        };
        // Vouched for by this request, or by the one that made it if that came later.
        let ballot = [held.ballot(), Some(token.ballot())]
            .into_iter()
            .flatten()
            .max_by_key(Ballot::rank);
        let copy = SessionCopy {
            ballot,
            ..SessionCopy::of(&held)
        };
        let candidates = inner.candidates(&session, Some(&token));
        let wanted = inner.config.replicas.wanted(candidates.len());
        let secondaries = inner
            .copy_before_reply(&copy, None, &candidates, wanted)
            .await?;
        bump(&inner.counters.confirmed_reads);
        let token = inner.token(read, read_id, secondaries, wanted);
        Ok(Some(token.encode()))
    }

    /// Deltas, when this node's replica applies them (and so its peers', which run the
    /// same service).
    fn wants_deltas(&self) -> bool {
        self.inner.replica.applies_deltas()
    }

    /// Ends the session on this node and, best effort, on every other live member:
    /// each drops it and remembers it ended, so no copy brings it back, and a request
    /// with its token starts a new session. A member that misses the message (down, or
    /// cut off) keeps its copy until it expires; one that ended it never serves it.
    async fn end(&self, ended: &Scone, _token: Option<&[u8]>) -> Result<(), PlacementError> {
        let inner = &*self.inner;
        let session = SessionId::of(ended);
        inner.replica.delete(&session);
        let others: Vec<Member> = inner
            .membership
            .members()
            .into_iter()
            .filter(|member| member.rpc != inner.me.rpc)
            .collect();
        let calls = others
            .iter()
            .map(|member| inner.transport.delete(member.peer, session.clone()));
        for (member, result) in others.iter().zip(join_all(calls).await) {
            if let Err(error) = result {
                tracing::warn!(peer = %member.rpc, %error, "a peer did not hear that a session ended");
            }
        }
        bump(&inner.counters.ended);
        Ok(())
    }
}

/// The rank of `node` for `session`: a stable order of nodes per session that spreads
/// sessions over nodes.
fn rendezvous(session: &SessionId, node: SocketAddr) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    session.hash(&mut hasher);
    node.hash(&mut hasher);
    hasher.finish()
}
