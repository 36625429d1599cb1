//! Per-connection guards: the idle and slow-frame timeouts, and the budget of request bytes.
//!
//! A [`Guarded`] transport notes what arrives (frames, and whether one is half read) in an
//! [`Activity`] shared with the connection's requests, which note when they finish; the
//! connection's [`watch`] reads it every quarter of the shorter timeout. So the hot path
//! pays a few counter updates per message and no timer; a timeout fires between one and
//! one and a half times its length after the fact.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{Sink, Stream};
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior};

use crate::codec::ServerTransport;
use crate::envelope::{RequestEnvelope, ResponseEnvelope};

/// What one connection has been doing, shared by its transport, requests and watchdog
/// (all on one worker thread).
pub(super) struct Activity {
    /// Frames received and requests finished: what shows the connection is in use.
    events: Cell<u64>,
    /// Frames received, to tell one frame in progress from the next.
    frames: Cell<u64>,
    /// Whether part of a frame has arrived and we are waiting on the peer for the rest.
    frame_in_progress: Cell<bool>,
    /// Requests running: a connection with any is not idle, however long they take.
    in_flight: Cell<usize>,
    /// Length of the last request frame read: tarpc hands a request to the server as soon
    /// as it has read its frame, so the next request started is charged this.
    last_request_len: Cell<usize>,
    /// Bytes of the frames of the requests running: what they may keep alive.
    held_bytes: Cell<usize>,
    /// No frame is read while `held_bytes` is at or over this.
    max_held_bytes: usize,
    /// The reader, parked while the budget is spent; woken by the request that frees it.
    parked: Cell<Option<Waker>>,
    /// Whether replies are waiting for the peer to read what was already sent.
    write_blocked: Cell<bool>,
    /// Writes that went through: what shows a blocked writer moving again.
    writes: Cell<u64>,
}

impl Activity {
    /// A new connection's, reading frames while its requests hold under `max_held_bytes`.
    pub(super) fn new(max_held_bytes: usize) -> Rc<Self> {
        Rc::new(Self {
            events: Cell::new(0),
            frames: Cell::new(0),
            frame_in_progress: Cell::new(false),
            in_flight: Cell::new(0),
            last_request_len: Cell::new(0),
            held_bytes: Cell::new(0),
            max_held_bytes: max_held_bytes.max(1),
            parked: Cell::new(None),
            write_blocked: Cell::new(false),
            writes: Cell::new(0),
        })
    }

    /// Counts a request that has just been read, charging it its frame, until the ticket
    /// is dropped (when the request finishes, or is cancelled or expires).
    pub(super) fn start_request(self: &Rc<Self>) -> Ticket {
        let bytes = self.last_request_len.get();
        self.held_bytes.set(self.held_bytes.get() + bytes);
        self.in_flight.set(self.in_flight.get() + 1);
        Ticket {
            activity: Rc::clone(self),
            bytes,
        }
    }

    fn budget_spent(&self) -> bool {
        self.held_bytes.get() >= self.max_held_bytes
    }
}

/// A running request's claim on its connection; dropping it ends the claim.
pub(super) struct Ticket {
    activity: Rc<Activity>,
    bytes: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity
            .held_bytes
            .set(activity.held_bytes.get() - self.bytes);
        activity.in_flight.set(activity.in_flight.get() - 1);
        activity.events.set(activity.events.get() + 1);
        if !activity.budget_spent() {
            if let Some(reader) = activity.parked.take() {
                reader.wake();
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A server transport that reports to an [`Activity`], and stops reading while the
    /// requests it has read hold their byte budget.
    pub(super) struct Guarded<Io> {
        #[pin]
        inner: ServerTransport<Io>,
        activity: Rc<Activity>,
    }
}

impl<Io> Guarded<Io> {
    pub(super) fn new(inner: ServerTransport<Io>, activity: Rc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<Io: AsyncRead + AsyncWrite> Stream for Guarded<Io> {
    type Item = io::Result<ClientMessage<RequestEnvelope>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let activity = &**this.activity;
        if activity.budget_spent() {
            // Waiting on our own requests, not on the peer: no frame timeout meanwhile.
            activity.frame_in_progress.set(false);
            activity.parked.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(message))) => {
                activity.frames.set(activity.frames.get() + 1);
                activity.events.set(activity.events.get() + 1);
                activity.frame_in_progress.set(false);
                if let ClientMessage::Request(_) = message {
                    let len = this.inner.as_ref().get_ref().last_frame_len();
                    activity.last_request_len.set(len);
                }
            }
            Poll::Pending => {
                let in_progress = this.inner.as_ref().get_ref().frame_in_progress();
                activity.frame_in_progress.set(in_progress);
            }
            Poll::Ready(_) => {}
        }
        next
    }
}

impl Activity {
    /// Records whether a write had to wait for the peer: a peer that sends requests but
    /// never reads the replies would otherwise hold its connection (and permit) forever.
    fn wrote<T>(&self, poll: Poll<T>) -> Poll<T> {
        if poll.is_pending() {
            self.write_blocked.set(true);
        } else {
            if self.write_blocked.get() {
                self.writes.set(self.writes.get() + 1);
            }
            self.write_blocked.set(false);
        }
        poll
    }
}

impl<Io: AsyncWrite> Sink<Response<ResponseEnvelope>> for Guarded<Io> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        this.activity.wrote(this.inner.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Response<ResponseEnvelope>) -> io::Result<()> {
        self.project().inner.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        this.activity.wrote(this.inner.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}

/// Why [`watch`] gave up on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    /// No request in flight and nothing received for the idle timeout.
    Idle,
    /// A frame started arriving and did not finish within the frame timeout.
    SlowFrame,
    /// Replies waited for the peer to read for the frame timeout, with no progress.
    StalledReader,
}

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "idle",
            Self::SlowFrame => "frame too slow",
            Self::StalledReader => "peer stopped reading replies",
        })
    }
}

/// Completes when the connection has been idle for `idle`, or a frame has been arriving
/// for `frame`, or replies have waited for the peer to read them for `frame` without any
/// going through; the caller then closes it. Never completes otherwise.
pub(super) async fn watch(activity: &Activity, idle: Duration, frame: Duration) -> Expired {
    let tick = (idle.min(frame) / 4).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Both clocks start at the tick that first sees their condition, so neither fires early.
    let mut events_seen = activity.events.get();
    let mut quiet_since = Instant::now();
    let mut frame_seen: Option<(u64, Instant)> = None;
    let mut blocked_seen: Option<(u64, Instant)> = None;
    loop {
        let now = ticks.tick().await;
        let events = activity.events.get();
        if events != events_seen || activity.in_flight.get() > 0 {
            events_seen = events;
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= idle {
            return Expired::Idle;
        }
        if activity.frame_in_progress.get() {
            let current = activity.frames.get();
            match frame_seen {
                Some((seen, since)) if seen == current => {
                    if now.duration_since(since) >= frame {
                        return Expired::SlowFrame;
                    }
                }
                _ => frame_seen = Some((current, now)),
            }
        } else {
            frame_seen = None;
        }
        if activity.write_blocked.get() {
            let current = activity.writes.get();
            match blocked_seen {
                Some((seen, since)) if seen == current => {
                    if now.duration_since(since) >= frame {
                        return Expired::StalledReader;
                    }
                }
                _ => blocked_seen = Some((current, now)),
            }
        } else {
            blocked_seen = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};
    use scone::ServiceId;
    use tokio::io::DuplexStream;

    use super::*;
    use crate::codec::{ClientTransport, Transport};
    use crate::envelope::{ClientId, ENVELOPE_VERSION};

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_after_its_timeout_not_before() {
        let activity = Activity::new(1024);
        let started = Instant::now();
        assert_eq!(watch(&activity, SECOND, 10 * SECOND).await, Expired::Idle);
        let waited = started.elapsed();
        assert!(SECOND <= waited && waited <= SECOND * 3 / 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_a_request_in_flight_is_not_idle() {
        let activity = Activity::new(1024);
        let ticket = activity.start_request();
        let watching = watch(&activity, SECOND, 10 * SECOND);
        tokio::pin!(watching);
        let later = tokio::time::timeout(10 * SECOND, &mut watching).await;
        assert!(later.is_err(), "ten idle timeouts with a request running");
        drop(ticket);
        let finished = Instant::now();
        assert_eq!(watching.await, Expired::Idle);
        assert!(
            finished.elapsed() >= SECOND,
            "idle counts from the request's end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_in_progress_expires_after_the_frame_timeout() {
        let activity = Activity::new(1024);
        activity.frame_in_progress.set(true);
        let watching = watch(&activity, 60 * SECOND, SECOND);
        tokio::pin!(watching);
        let half = SECOND * 3 / 4;
        assert!(tokio::time::timeout(half, &mut watching).await.is_err());
        // That frame finished and the next began: its own clock starts.
        activity.frames.set(1);
        activity.events.set(1);
        assert!(tokio::time::timeout(half, &mut watching).await.is_err());
        let started = Instant::now();
        assert_eq!(watching.await, Expired::SlowFrame);
        assert!(started.elapsed() <= SECOND, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_replies_expires_after_the_frame_timeout() {
        // The peer's end of a tiny pipe is never read: the second reply cannot be written.
        let (_peer, server_io) = tokio::io::duplex(64);
        let activity = Activity::new(1 << 20);
        let mut server = Guarded::new(Transport::new(server_io, 1 << 20), activity.clone());
        let reply = |id| Response {
            request_id: id,
            message: Ok(ResponseEnvelope {
                version: ENVELOPE_VERSION,
                scones: Default::default(),
                token: None,
                outcome: crate::envelope::Outcome::Reply(bytes::Bytes::from_static(&[1; 200])),
            }),
        };
        let sending = async {
            for id in 0.. {
                if server.send(reply(id)).await.is_err() {
                    break;
                }
            }
        };
        let watching = watch(&activity, 60 * SECOND, SECOND);
        let started = Instant::now();
        tokio::select! {
            () = sending => panic!("the writer never blocked"),
            expired = watching => assert_eq!(expired, Expired::StalledReader),
        }
        let waited = started.elapsed();
        assert!(SECOND <= waited && waited <= 2 * SECOND, "{waited:?}");
    }

    fn request(id: u64) -> ClientMessage<RequestEnvelope> {
        ClientMessage::Request(tarpc::Request {
            context: tarpc::context::current(),
            id,
            message: RequestEnvelope {
                version: ENVELOPE_VERSION,
                client: ClientId::from_bytes([1; 16]),
                service: ServiceId::new("guarded").unwrap(),
                scones: Default::default(),
                token: None,
                body: bytes::Bytes::from_static(&[7; 100]),
            },
        })
    }

    #[tokio::test]
    async fn reading_stops_while_requests_hold_the_byte_budget() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let mut client = ClientTransport::<DuplexStream>::new(client_io, 1 << 20);
        for id in 1..=3 {
            client.send(request(id)).await.unwrap();
        }
        // Room for one request's frame and a byte: the second read spends the budget.
        let frame_len = postcard::to_stdvec(&request(1)).unwrap().len();
        let activity = Activity::new(frame_len + 1);
        let mut server = Guarded::new(Transport::new(server_io, 1 << 20), activity.clone());
        assert!(server.next().await.unwrap().is_ok());
        let first = activity.start_request();
        assert_eq!(activity.held_bytes.get(), frame_len, "charged its frame");
        assert!(server.next().await.unwrap().is_ok());
        let second = activity.start_request();
        assert!(
            futures::poll!(server.next()).is_pending(),
            "the third frame waits, though it has arrived"
        );
        drop(first);
        let third = tokio::time::timeout(SECOND, server.next()).await;
        assert!(
            matches!(third, Ok(Some(Ok(_)))),
            "read once a request finished"
        );
        drop(second);
        assert_eq!(activity.held_bytes.get(), 0);
        assert_eq!(activity.in_flight.get(), 0);
    }
}
