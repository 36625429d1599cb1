//! A session of any mode: where a mode's sessions live (the SCONE cluster's seeds, or the
//! Redis primary), opening them, one update on either, and the CPU time of the servers
//! behind them.

use std::net::SocketAddr;
use std::time::Duration;

use scone_cluster::{ClusterChannel, ClusterClientConfig};

use crate::cluster::SconeSession;
use crate::measure::{cpu_seconds, thread_cpu_seconds};
use crate::redis::{RedisSession, RedisWrite};
use crate::{bounded, CLIENT_THREAD};

/// Where a mode's sessions live.
pub enum Target {
    Scone {
        seeds: Vec<SocketAddr>,
    },
    Redis {
        port: u16,
        pids: Vec<u32>,
        write: RedisWrite,
    },
}

/// A session of one mode.
pub enum Session {
    Scone(Box<SconeSession>),
    Redis(Box<RedisSession>),
}

impl Session {
    pub async fn update(&mut self) -> bool {
        match self {
            Session::Scone(session) => session.update().await,
            Session::Redis(session) => session.update().await,
        }
    }
}

/// Redis keys are never reused: every session starts fresh.
static NEXT_KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `count` new sessions of `target`; SCONE's over `connections` channels.
pub async fn open_sessions(target: &Target, count: usize, connections: usize) -> Vec<Session> {
    match target {
        Target::Scone { seeds } => {
            let config = ClusterClientConfig {
                attempt_timeout: Duration::from_secs(2),
            };
            let channels: Vec<ClusterChannel> = (0..connections.min(count))
                .map(|_| ClusterChannel::new(seeds.clone(), config.clone()))
                .collect();
            let opening =
                (0..count).map(|i| SconeSession::open(channels[i % channels.len()].clone()));
            bounded("opening SCONE sessions", futures::future::join_all(opening))
                .await
                .into_iter()
                .map(|session| Session::Scone(Box::new(session)))
                .collect()
        }
        Target::Redis { port, write, .. } => {
            let mut sessions = Vec::with_capacity(count);
            for _ in 0..count {
                let key = NEXT_KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let session = RedisSession::open(*port, key, *write).await;
                sessions.push(Session::Redis(Box::new(session)));
            }
            sessions
        }
    }
}

impl Target {
    /// CPU seconds of the servers so far (the Redis processes, or the nodes' threads).
    pub fn server_cpu_seconds(&self) -> f64 {
        match self {
            Target::Redis { pids, .. } => pids.iter().map(|&pid| cpu_seconds(pid)).sum(),
            Target::Scone { .. } => {
                cpu_seconds(std::process::id()) - thread_cpu_seconds(CLIENT_THREAD)
            }
        }
    }
}
