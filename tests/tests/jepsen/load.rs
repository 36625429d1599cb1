//! The load: sessions on one shared `ClusterChannel` (thin clients: the channel keeps
//! each session's routing token), each adding a unique item `s{session}-u{n}` every few
//! hundred milliseconds until told to stop; a board of where each session stands (for the
//! wait between rounds) and the whole load's counts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use examples::cart::{CartClient, CartState};
use examples::procs;
use scone::{ClientId, ServiceId};
use scone_cluster::{ClusterChannel, ClusterClientConfig};
use scone_rpc::SconeClient;
use tarpc::context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::cluster::Node;
use crate::lock;
use crate::profile::Profile;
use crate::session::{Names, Session};

/// Bound of one call (the channel bounds each attempt by 500 ms; this catches a hang).
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(5);

/// Where a session of the load stands, for the wait between rounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Status {
    /// When its last acknowledged call was sent.
    pub(crate) acked_sent: Option<Instant>,
    /// Its calls that failed since the last acknowledged one.
    pub(crate) failing: usize,
    /// The last of them: when it was sent, and what went wrong.
    pub(crate) last_error: Option<(Instant, String)>,
}

/// Every session's [`Status`], by index.
pub(crate) type Board = Arc<Mutex<Vec<Status>>>;

/// What a failed call was, for the report.
pub(crate) use examples::procs::call_error as error_kind;

/// Counts of the whole load, for the per-round lines.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) acked: AtomicUsize,
    pub(crate) failed: AtomicUsize,
}

/// What a session's driver needs besides the session.
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) channel: ClusterChannel,
    pub(crate) service: ServiceId,
    pub(crate) pace: Duration,
    pub(crate) replicas: usize,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) board: Board,
    pub(crate) tally: Arc<Tally>,
}

/// Runs `session` from `start`, one `add` at a time, one every `pace`, until told to stop.
pub(crate) async fn drive(mut session: Session, load: Load, start: Instant) -> Session {
    let mut stop = load.stop.clone();
    let mut ticker = tokio::time::interval_at(start.into(), load.pace);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = ticker.tick() => {}
        }
        let item = format!("s{}-u{}", session.index, session.next);
        session.next += 1;
        session.sent.insert(item.clone());
        session.calls += 1;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            CALL_LIMIT,
            session.cart.add(context::current(), item.clone(), 1),
        )
        .await;
        let failure = match answer {
            Ok(Ok(Ok(view))) => {
                let token = load.channel.token(session.id, &load.service);
                let held = token
                    .as_ref()
                    .map_or("no token".into(), |token| session.names.token(token));
                session.history.push(format!(
                    "{} {item}: acknowledged by {}, {held}",
                    session.names.at(started),
                    view.served_by
                ));
                session.acknowledge(&item, &view, token, load.replicas);
                lock(&load.board)[session.index] = Status {
                    acked_sent: Some(started),
                    failing: 0,
                    last_error: None,
                };
                load.tally.acked.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(Err(error))) => format!("the cart refused: {error}"),
            Ok(Err(error)) => error_kind(error),
            Err(_) => format!("no answer within {CALL_LIMIT:?} (the test's bound)"),
        };
        load.tally.failed.fetch_add(1, Ordering::Relaxed);
        {
            let mut board = lock(&load.board);
            let status = &mut board[session.index];
            status.failing += 1;
            status.last_error = Some((started, failure.clone()));
        }
        session.history.push(format!(
            "{} {item}: failed after {} ms: {failure}",
            session.names.at(started),
            started.elapsed().as_millis()
        ));
        session.failed.push((item, failure));
    }
    session
}

/// The load while it runs: its channel, its sessions' ids, their board and counts, and the
/// tasks that drive them.
pub(crate) struct Running {
    pub(crate) channel: ClusterChannel,
    pub(crate) service: ServiceId,
    pub(crate) ids: Vec<ClientId>,
    pub(crate) board: Board,
    pub(crate) tally: Arc<Tally>,
    /// When the load started.
    pub(crate) started: Instant,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Session>>,
}

/// Starts the profile's sessions on `nodes`, spread over the pace; `t0` is the test's
/// start, for the sessions' lines.
pub(crate) fn start(profile: &Profile, nodes: &[Node], t0: Instant) -> anyhow::Result<Running> {
    let names = Names {
        nodes: Arc::new(
            nodes
                .iter()
                .map(|node| (node.ports.rpc, node.name()))
                .collect(),
        ),
        t0,
    };
    let service = examples::cart::service_id()?;
    let seeds: Vec<SocketAddr> = nodes.iter().map(|node| node.ports.rpc).collect();
    let config = ClusterClientConfig {
        attempt_timeout: profile.attempt_timeout,
    };
    let channel = ClusterChannel::new(seeds, config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let board: Board = Arc::new(Mutex::new(vec![Status::default(); profile.sessions]));
    let tally = Arc::new(Tally::default());
    let load = Load {
        channel: channel.clone(),
        service: service.clone(),
        pace: profile.pace,
        replicas: profile.replicas,
        stop: stop_rx,
        board: Arc::clone(&board),
        tally: Arc::clone(&tally),
    };
    let load_started = Instant::now();
    let mut tasks = Vec::with_capacity(profile.sessions);
    let mut ids = Vec::with_capacity(profile.sessions);
    for index in 0..profile.sessions {
        let id = ClientId::random()?;
        ids.push(id);
        let cart = CartClient::from(
            SconeClient::thin_for::<CartState>(channel.clone())?.with_client_id(id),
        );
        let session = Session::new(index, id, cart, names.clone());
        // Spread over the pace, not all at once.
        let start = load_started + profile.pace.mul_f64(index as f64 / profile.sessions as f64);
        tasks.push(tokio::spawn(drive(session, load.clone(), start)));
    }
    Ok(Running {
        channel,
        service,
        ids,
        board,
        tally,
        started: load_started,
        stop: stop_tx,
        tasks,
    })
}

impl Running {
    /// Stops the load (every call is bounded) and gives back its sessions.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<Vec<Session>> {
        let _ = self.stop.send(true);
        let mut sessions = Vec::with_capacity(self.tasks.len());
        for task in std::mem::take(&mut self.tasks) {
            let session = tokio::time::timeout(CALL_LIMIT + procs::LIMIT, task)
                .await
                .context("the load did not stop in time")??;
            sessions.push(session);
        }
        Ok(sessions)
    }
}

/// The failed calls of `sessions`, by what went wrong.
pub(crate) fn errors(sessions: &[Session]) -> BTreeMap<String, usize> {
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for session in sessions {
        for (_, error) in &session.failed {
            *errors.entry(error.clone()).or_default() += 1;
        }
    }
    errors
}
