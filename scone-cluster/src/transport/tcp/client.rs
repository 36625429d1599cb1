//! The calling side of peer links: [`TcpTransport`], connections to each peer (one per
//! server worker, one the other callers share) with numbered calls in flight on them,
//! and the copies that wait for a peer sent together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
use scone_rpc::peer_link::{self, LinkKeys, LinkSecret, OpeningKey, SealingKey};
use tokio::net::TcpStream;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::oneshot;

use super::wire::{self, Answer, Ask, Call, Frame, Reply};
use super::{
    HANDSHAKE_LABEL, MAX_COPIES_PER_MESSAGE, MAX_COPIES_WAITING, MAX_COPY_BYTES_PER_MESSAGE,
    MAX_LANES,
};
use crate::replica::{CopyItem, DeltaCopy, SessionCopy};
use crate::session::SessionId;
use crate::transport::{LinkStats, PeerError, PeerTransport};

/// Calls to peers over TCP: connections to each peer (*links*), opened on first use and
/// again after one fails; every connect and call bounded by a timeout. Cloning shares it.
///
/// A thread that calls from a single-threaded runtime (a server's worker) has a link of
/// its own to each peer, whose answers are read by a task on that runtime: a copy's
/// answer then wakes the request that waits for it on the same thread, rather than
/// waking one thread to read it and another to carry on (the `vs_redis` bench shows
/// what that is worth). Calls from a multi-thread runtime, and from single-threaded
/// ones past the first [`MAX_LANES`], share one link per peer. A link fails (its calls
/// answered with an error, its socket closed) when the task reading its answers stops
/// with its runtime, or when a call on it waits past its bound; the next call opens
/// another.
///
/// Copies on one link go out one message at a time: the copies that come while one is
/// on the wire wait and go together in the next (at most [`MAX_COPIES_PER_MESSAGE`]),
/// each still answered on its own. A lone copy goes as soon as its task yields (with
/// the copies of requests signed in the same group, which are ready by then); under
/// load, a message and its answer are shared by many commits instead of one round trip
/// each. At most [`MAX_COPIES_WAITING`] wait per link; copies whose caller gave up are
/// dropped unsent.
/// Fetches and deletes go out at once, beside the copies.
///
/// Copies of one session on two links may arrive out of order (a re-replication pass's
/// and a commit's, say: a session's commits wait for their copies one after another). A
/// peer refuses whichever does not descend from what it holds, as it would a late copy
/// on one link (see [`SessionStore::put`](crate::SessionStore::put)), and a copy is
/// acknowledged only once kept.
#[derive(Clone, Debug)]
pub struct TcpTransport {
    /// Each peer's links, by lane, each behind its own lock: a connect to a dead peer
    /// holds up only calls to that peer.
    links: Arc<Mutex<Links>>,
    timeout: Duration,
    /// The cluster secret peers prove they hold, if the cluster has one.
    secret: Option<LinkSecret>,
    counters: Arc<LinkCounters>,
}

/// The links of a [`TcpTransport`], by peer and lane.
#[derive(Debug, Default)]
struct Links {
    /// The threads that have a lane of their own: the first [`MAX_LANES`] to call from
    /// a single-threaded runtime. (A thread that has ended keeps its lane: thread IDs
    /// are never reused, so at most `MAX_LANES` are ever given.)
    lanes: Vec<ThreadId>,
    slots: HashMap<(SocketAddr, Lane), Slot>,
}

/// Which of a peer's links a call goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lane {
    /// The calling thread's own.
    Own(usize),
    /// The one every other caller shares.
    Shared,
}

impl Links {
    /// The lane of the calling thread: its own if it calls from a single-threaded
    /// runtime (whose tasks never leave it) and has one or one is left; else the shared
    /// one (a multi-thread runtime's tasks move between its threads, and its answers
    /// may be read on any of them anyway).
    fn lane(&mut self) -> Lane {
        let single_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::CurrentThread);
        match single_threaded {
            true => self.lane_of(std::thread::current().id()),
            false => Lane::Shared,
        }
    }

    /// `thread`'s own lane if it has one or one is left, else the shared one.
    fn lane_of(&mut self, thread: ThreadId) -> Lane {
        if let Some(lane) = self.lanes.iter().position(|&t| t == thread) {
            return Lane::Own(lane);
        }
        if self.lanes.len() < MAX_LANES {
            self.lanes.push(thread);
            return Lane::Own(self.lanes.len() - 1);
        }
        Lane::Shared
    }
}

/// What [`TcpTransport::link_stats`](PeerTransport::link_stats) reports.
#[derive(Debug, Default)]
struct LinkCounters {
    opened: AtomicU64,
    failed: AtomicU64,
    copy_messages: AtomicU64,
}

/// One peer's link on one lane, if open; locked while connecting.
type LinkCell = tokio::sync::Mutex<Option<Arc<Link>>>;
type Slot = Arc<LinkCell>;

/// Where a copy's answer goes.
type CopyAnswer = oneshot::Sender<Result<(), PeerError>>;

/// An open connection to a peer.
struct Link {
    peer: SocketAddr,
    timeout: Duration,
    /// Written only by the tasks [`Link::send`] spawns, so a caller that gives up never
    /// leaves half a frame on the wire; with the key that seals each frame as it goes
    /// out (in the order frames go out), on a sealed link.
    frames: tokio::sync::Mutex<(SplitSink<Frames, Frame>, Option<SealingKey>)>,
    state: Mutex<LinkState>,
    counters: Arc<LinkCounters>,
    /// Reads the answers; stopped when the link is dropped.
    reader: Mutex<Option<tokio::task::AbortHandle>>,
    /// Where the link is kept, so that a failed one lets go of its socket at once rather
    /// than when its lane is next used (which may be never).
    slot: Weak<LinkCell>,
}

type Frames = Transport<TcpStream, Frame, Frame>;

#[derive(Debug, Default)]
struct LinkState {
    next_id: u64,
    /// Calls sent and not yet answered.
    pending: HashMap<u64, (Pending, Instant)>,
    /// Copies not yet sent.
    waiting: Vec<(CopyItem, CopyAnswer)>,
    /// Whether a message of copies is on the wire (its answer sends the next), or about
    /// to be (a [`SendWaiting`] task will send it).
    copies_in_flight: bool,
    /// Why the link failed, once it has: it takes no more calls.
    failed: Option<String>,
}

/// A call waiting for its answer.
#[derive(Debug)]
enum Pending {
    Copies(Vec<CopyAnswer>),
    One(oneshot::Sender<Result<Reply, PeerError>>),
}

fn unreachable(peer: SocketAddr, reason: impl ToString) -> PeerError {
    PeerError::Unreachable {
        peer,
        reason: reason.to_string(),
    }
}

impl TcpTransport {
    /// A transport whose connects and calls give up after `timeout` each.
    pub fn new(timeout: Duration) -> Self {
        Self {
            links: Arc::default(),
            timeout,
            secret: None,
            counters: Arc::default(),
        }
    }

    /// Proves `secret` to every peer, and makes every peer prove it, before any call.
    pub fn with_secret(mut self, secret: LinkSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The lock of the calling thread's link to `peer`.
    fn slot(&self, peer: SocketAddr) -> Slot {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lane = links.lane();
        Arc::clone(links.slots.entry((peer, lane)).or_default())
    }

    /// The calling thread's open link to `peer`, or a new one if there is none or the
    /// last one failed.
    async fn link(&self, peer: SocketAddr) -> Result<Arc<Link>, PeerError> {
        let slot = self.slot(peer);
        let mut held = slot.lock().await;
        if let Some(link) = held.as_ref().filter(|link| !link.has_failed()) {
            return Ok(Arc::clone(link));
        }
        *held = None;
        // Boxed: connecting is rare, and every copy's future would otherwise be as large
        // as the connect's (the copy is on the commit path, made and moved per request).
        let connect = self.connect(peer, Arc::downgrade(&slot));
        let link = Box::pin(tokio::time::timeout(self.timeout, connect))
            .await
            .map_err(|_| unreachable(peer, "connect timed out"))??;
        *held = Some(Arc::clone(&link));
        Ok(link)
    }

    async fn connect(
        &self,
        peer: SocketAddr,
        slot: Weak<LinkCell>,
    ) -> Result<Arc<Link>, PeerError> {
        let mut stream = TcpStream::connect(peer)
            .await
            .map_err(|error| unreachable(peer, error))?;
        let _ = stream.set_nodelay(true);
        super::keep_alive(&stream);
        wire::write_preamble(&mut stream, self.timeout)
            .await
            .map_err(|error| unreachable(peer, error))?;
        let keys = match &self.secret {
            Some(secret) => Some(
                peer_link::connect(&mut stream, secret, HANDSHAKE_LABEL, self.timeout)
                    .await
                    .map_err(|error| unreachable(peer, error))?,
            ),
            None => None,
        };
        let (sealing, opening) = keys.map(LinkKeys::split).unzip();
        let (sink, answers) = Frames::new(stream, DEFAULT_MAX_FRAME_BYTES).split();
        let link = Arc::new(Link {
            peer,
            timeout: self.timeout,
            frames: tokio::sync::Mutex::new((sink, sealing)),
            state: Mutex::default(),
            counters: Arc::clone(&self.counters),
            reader: Mutex::default(),
            slot,
        });
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        // The guard is made here, not in the task: a task dropped before its first poll
        // drops it too.
        let reader = tokio::spawn(read_answers(
            FailWhenStopped(Arc::downgrade(&link)),
            answers,
            opening,
            self.timeout,
        ));
        *link.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader.abort_handle());
        Ok(link)
    }

    /// Sends `copy` to `peer` with whatever else waits for it; its answer.
    async fn copy(&self, peer: SocketAddr, copy: CopyItem) -> Result<(), PeerError> {
        let link = self.link(peer).await?;
        let (answer_tx, answer) = oneshot::channel();
        let send_now = {
            let mut state = link.state();
            if let Some(reason) = &state.failed {
                return Err(unreachable(peer, reason));
            }
            if state.waiting.len() >= MAX_COPIES_WAITING {
                return Err(unreachable(peer, "too many copies waiting for it"));
            }
            state.waiting.push((copy, answer_tx));
            !std::mem::replace(&mut state.copies_in_flight, true)
        };
        if send_now {
            // In a task of its own, which a single-threaded runtime (a server's worker)
            // runs after the tasks ready now: the other requests of the group its caller
            // was signed with queue their copies first, and all go together.
            let send = SendWaiting(Some(Arc::clone(&link)));
            tokio::spawn(async move { send.run() });
        }
        // Behind the message on the wire (and, under load, a few more), each bounded by
        // the link's timeout; past this the copy counts as failed, and may still arrive
        // (as any call that timed out may).
        match tokio::time::timeout(self.timeout * 4, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(unreachable(peer, "the copy was dropped")),
            Err(_) => Err(link.give_up()),
        }
    }

    /// Asks `peer` one thing; its reply.
    async fn call(&self, peer: SocketAddr, ask: Ask) -> Result<Reply, PeerError> {
        let link = self.link(peer).await?;
        let (reply_tx, reply) = oneshot::channel();
        {
            let state = link.state();
            if let Some(reason) = &state.failed {
                return Err(unreachable(peer, reason));
            }
            link.send(state, Pending::One(reply_tx), ask);
        }
        match tokio::time::timeout(self.timeout * 2, reply).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(unreachable(peer, "the call was dropped")),
            Err(_) => Err(link.give_up()),
        }
    }
}

impl Link {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn has_failed(&self) -> bool {
        self.state().failed.is_some()
    }

    /// Sends the copies waiting, as one message (as many as one may carry); if none are
    /// left (their callers gave up), the next copy sends itself.
    fn send_waiting_copies(self: &Arc<Self>, mut state: MutexGuard<'_, LinkState>) {
        // Copies whose caller gave up (its request's deadline passed) are not sent.
        state.waiting.retain(|(_, answer)| !answer.is_closed());
        let (mut count, mut bytes) = (0, 0);
        for (copy, _) in &state.waiting {
            if count == MAX_COPIES_PER_MESSAGE
                || (count > 0 && bytes + copy.payload_len() > MAX_COPY_BYTES_PER_MESSAGE)
            {
                break;
            }
            count += 1;
            bytes += copy.payload_len();
        }
        if count == 0 {
            state.copies_in_flight = false;
            return;
        }
        let (copies, answers): (Vec<CopyItem>, Vec<CopyAnswer>) =
            state.waiting.drain(..count).unzip();
        self.counters.copy_messages.fetch_add(1, Ordering::Relaxed);
        self.send(state, Pending::Copies(answers), Ask::Copies(copies));
    }

    /// Numbers `ask`, records what waits for its answer, and writes it in a task of its
    /// own (whoever called may give up; the frame is still written whole).
    fn send(self: &Arc<Self>, mut state: MutexGuard<'_, LinkState>, pending: Pending, ask: Ask) {
        let id = state.next_id;
        state.next_id += 1;
        state.pending.insert(id, (pending, Instant::now()));
        drop(state);
        let link = Arc::clone(self);
        tokio::spawn(async move {
            // Behind the frames before it (each bounded alike), then bounded itself.
            let mut writer = link.frames.lock().await;
            let (frames, sealing) = &mut *writer;
            let written = match Frame::seal(&Call { id, ask }, sealing.as_mut()) {
                Ok(frame) => tokio::time::timeout(link.timeout, frames.send(frame)).await,
                Err(error) => Ok(Err(error)),
            };
            drop(writer);
            match written {
                Ok(Ok(())) => {}
                Ok(Err(error)) => link.fail(&error),
                Err(_) => link.fail("writing timed out"),
            }
        });
    }

    /// Hands `reply` to what waits for call `id`; after a message of copies, sends the
    /// copies that came meanwhile.
    fn answered(self: &Arc<Self>, id: u64, reply: Reply) {
        let mut state = self.state();
        let Some((pending, _)) = state.pending.remove(&id) else {
            return; // the link failed meanwhile, and told its caller so
        };
        match (pending, reply) {
            (Pending::Copies(answers), Reply::Copies(results)) => {
                self.send_waiting_copies(state);
                let peer = self.peer;
                if results.len() == answers.len() {
                    for (answer, result) in answers.into_iter().zip(results) {
                        let _ = answer
                            .send(result.map_err(|refusal| PeerError::Refused { peer, refusal }));
                    }
                } else {
                    for answer in answers {
                        let _ = answer.send(Err(unreachable(peer, "answers missing")));
                    }
                }
            }
            (Pending::One(answer), reply @ (Reply::Fetch(_) | Reply::Delete(_))) => {
                drop(state);
                let _ = answer.send(Ok(reply));
            }
            (pending, _) => {
                state.pending.insert(id, (pending, Instant::now()));
                drop(state);
                self.fail("an answer of the wrong kind");
            }
        }
    }

    /// Takes the link out of its slot if it is still there, so that the socket closes
    /// once the tasks that hold the link end, not when the lane is next used. If the
    /// slot is locked (a caller is connecting, or checking this link), that caller finds
    /// it failed and replaces it.
    fn leave_slot(self: &Arc<Self>) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        let Ok(mut held) = slot.try_lock() else {
            return;
        };
        if held.as_ref().is_some_and(|link| Arc::ptr_eq(link, self)) {
            *held = None;
        }
    }

    /// Whether a call has waited for its answer longer than the timeout.
    fn overdue(&self) -> bool {
        self.state()
            .pending
            .values()
            .any(|(_, sent)| sent.elapsed() > self.timeout)
    }

    /// Fails the link after a call on it waited past its bound: its reader missed it
    /// (say it runs on a runtime that is not running now), so no later call should
    /// wait behind it. The error for that call.
    fn give_up(self: &Arc<Self>) -> PeerError {
        let reason = "no answer in time";
        self.fail(reason);
        unreachable(self.peer, reason)
    }

    /// Fails every call on the link, sent or waiting, and closes it; the next call
    /// opens a new one.
    fn fail(self: &Arc<Self>, reason: impl ToString) {
        self.fail_logged(reason, true);
    }

    /// [`fail`](Self::fail), logged at info level if `notable` (at debug level if not:
    /// a runtime that stops, as every server worker does at shutdown, fails its links).
    fn fail_logged(self: &Arc<Self>, reason: impl ToString, notable: bool) {
        let reason = reason.to_string();
        let (pending, waiting) = {
            let mut state = self.state();
            if state.failed.is_some() {
                return;
            }
            state.failed = Some(reason.clone());
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.waiting),
            )
        };
        match notable {
            true => {
                tracing::info!(peer = %self.peer, %reason, "peer link failed; the next call reconnects")
            }
            false => {
                tracing::debug!(peer = %self.peer, %reason, "peer link failed; the next call reconnects")
            }
        }
        if let Some(reader) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            reader.abort();
        }
        self.leave_slot();
        // So the peer sees the connection end (keepalive would not: this end is alive).
        // Not from a runtime that is gone (a `SendWaiting` dropped as it stops): dropping
        // the link closes the socket then, once the tasks that hold it are gone.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let link = Arc::clone(self);
            runtime.spawn(async move {
                let closing = async { link.frames.lock().await.0.close().await };
                let _ = tokio::time::timeout(link.timeout, closing).await;
            });
        }
        let failed = || unreachable(self.peer, &reason);
        for (pending, _) in pending.into_values() {
            match pending {
                Pending::Copies(answers) => {
                    for answer in answers {
                        let _ = answer.send(Err(failed()));
                    }
                }
                Pending::One(answer) => {
                    let _ = answer.send(Err(failed()));
                }
            }
        }
        for (_, answer) in waiting {
            let _ = answer.send(Err(failed()));
        }
    }
}

/// Sends the copies waiting on a link, from a task of its own. If the task is dropped
/// before it runs (its runtime stopped first), it fails the link instead: the copies
/// waiting are answered, and the next call opens a new link rather than waiting behind a
/// message that would never go.
struct SendWaiting(Option<Arc<Link>>);

impl SendWaiting {
    fn run(mut self) {
        if let Some(link) = self.0.take() {
            link.send_waiting_copies(link.state());
        }
    }
}

impl Drop for SendWaiting {
    fn drop(&mut self) {
        if let Some(link) = self.0.take() {
            link.fail("the task that was to send copies stopped with its runtime");
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("pending", &state.pending.len())
            .field("waiting", &state.waiting.len())
            .field("failed", &state.failed)
            .finish_non_exhaustive()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.get_mut().ok().and_then(Option::take) {
            reader.abort();
        }
    }
}

/// Fails a link when the task reading its answers ends, however it ends: dropped
/// unfinished (its runtime stopped: say a server's worker, while the node lives on), no
/// one would read the answers to the calls on the link, which would wait out their
/// timeouts, and so would every call after them.
struct FailWhenStopped(Weak<Link>);

impl Drop for FailWhenStopped {
    fn drop(&mut self) {
        if let Some(link) = self.0.upgrade() {
            link.fail_logged("the task reading its answers stopped", false);
        }
    }
}

/// Reads `link`'s answers until it fails, or a call waits past the timeout, or the link
/// is dropped.
async fn read_answers(
    stopped: FailWhenStopped,
    mut answers: SplitStream<Frames>,
    mut opening: Option<OpeningKey>,
    timeout: Duration,
) {
    let link = &stopped.0;
    // Checked at least this often, so a peer that stops answering fails its link
    // within twice the timeout.
    let tick = timeout.max(Duration::from_millis(10));
    let mut checked = Instant::now();
    loop {
        let next = tokio::time::timeout(tick, answers.next()).await;
        let Some(link) = link.upgrade() else { return };
        // Also while answers keep coming: a peer that answers some calls and not others
        // (or falls ever further behind) fails its link too.
        if checked.elapsed() > tick {
            checked = Instant::now();
            if link.overdue() {
                return link.fail("no answer in time");
            }
        }
        let next = next.map(|frame| frame.map(|frame| frame?.open(opening.as_mut())));
        match next {
            Ok(Some(Ok(Answer { id, reply }))) => link.answered(id, reply),
            Ok(Some(Err(error))) => return link.fail(error),
            Ok(None) => return link.fail("the peer closed the connection"),
            Err(_) if link.overdue() => return link.fail("no answer in time"),
            Err(_) => {}
        }
    }
}

impl PeerTransport for TcpTransport {
    async fn replicate(&self, peer: SocketAddr, copy: SessionCopy) -> Result<(), PeerError> {
        self.copy(peer, CopyItem::Whole(copy)).await
    }

    async fn replicate_delta(&self, peer: SocketAddr, copy: DeltaCopy) -> Result<(), PeerError> {
        self.copy(peer, CopyItem::Delta(copy)).await
    }

    async fn fetch(
        &self,
        peer: SocketAddr,
        session: SessionId,
    ) -> Result<Option<SessionCopy>, PeerError> {
        match self.call(peer, Ask::Fetch(session)).await? {
            Reply::Fetch(copy) => Ok(copy),
            _ => Err(unreachable(peer, "an answer of the wrong kind")),
        }
    }

    async fn delete(&self, peer: SocketAddr, session: SessionId) -> Result<bool, PeerError> {
        match self.call(peer, Ask::Delete(session)).await? {
            Reply::Delete(held) => Ok(held),
            _ => Err(unreachable(peer, "an answer of the wrong kind")),
        }
    }

    fn link_stats(&self) -> LinkStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LinkStats {
            opened: read(&self.counters.opened),
            failed: read(&self.counters.failed),
            copy_messages: read(&self.counters.copy_messages),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_ids(count: usize) -> Vec<ThreadId> {
        (0..count)
            .map(|_| {
                std::thread::spawn(|| std::thread::current().id())
                    .join()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_first_threads_get_lanes_of_their_own_and_the_rest_share_one() {
        let mut links = Links::default();
        let threads = thread_ids(MAX_LANES + 2);
        for (lane, &thread) in threads.iter().take(MAX_LANES).enumerate() {
            assert_eq!(links.lane_of(thread), Lane::Own(lane));
        }
        for &thread in &threads[MAX_LANES..] {
            assert_eq!(links.lane_of(thread), Lane::Shared);
        }
        // A thread keeps its lane.
        assert_eq!(links.lane_of(threads[3]), Lane::Own(3));
        assert_eq!(links.lane_of(threads[MAX_LANES]), Lane::Shared);
    }

    #[test]
    fn callers_outside_a_single_threaded_runtime_share_a_lane() {
        let mut links = Links::default();
        assert_eq!(links.lane(), Lane::Shared, "outside any runtime");
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(multi.block_on(async { links.lane() }), Lane::Shared);
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(single.block_on(async { links.lane() }), Lane::Own(0));
    }
}
