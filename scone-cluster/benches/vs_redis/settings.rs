//! The modes the bench can run and its settings, read from the environment
//! (`VS_REDIS_*`).

use std::str::FromStr;
use std::time::Duration;

use crate::IN_FLIGHT;

/// What is measured: the SCONE cluster (k = 1 or k = 0) or Redis (pipelined or not, or
/// without `WAIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Scone,
    Redis,
    RedisUnpipelined,
    RedisK0,
    SconeK0,
    SconeBatched,
    SconeSigned,
}

impl Mode {
    const ALL: [Mode; 7] = [
        Mode::Scone,
        Mode::Redis,
        Mode::RedisUnpipelined,
        Mode::RedisK0,
        Mode::SconeK0,
        Mode::SconeBatched,
        Mode::SconeSigned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Scone => "scone",
            Mode::Redis => "redis",
            Mode::RedisUnpipelined => "redis-unpipelined",
            Mode::RedisK0 => "redis-k0",
            Mode::SconeK0 => "scone-k0",
            Mode::SconeBatched => "scone-batched",
            Mode::SconeSigned => "scone-signed",
        }
    }

    pub fn is_redis(self) -> bool {
        matches!(self, Mode::Redis | Mode::RedisUnpipelined | Mode::RedisK0)
    }

    fn by_default(self) -> bool {
        matches!(self, Mode::Scone | Mode::Redis)
    }
}

/// The settings of one run.
pub struct Settings {
    pub modes: Vec<Mode>,
    pub calls: usize,
    pub window: Duration,
    pub rounds: usize,
    pub connections: usize,
    pub node_workers: usize,
    pub scale: bool,
    pub scale_sessions: Vec<u64>,
    pub scale_group: usize,
}

/// `name`'s value, or `default` when unset; a bad value stops the bench.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Settings {
    pub fn from_env() -> Self {
        let only = std::env::var("VS_REDIS_MODES").unwrap_or_default();
        let modes: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|mode| match only.trim().is_empty() {
                true => mode.by_default(),
                false => only.split(',').any(|m| m.trim() == mode.name()),
            })
            .collect();
        assert!(
            !modes.is_empty(),
            "VS_REDIS_MODES={only:?} names no mode (scone, redis, redis-unpipelined, redis-k0, scone-k0, scone-batched, scone-signed)"
        );
        let mut scale_sessions: Vec<u64> = std::env::var("VS_REDIS_SCALE_SESSIONS")
            .unwrap_or_else(|_| "100000,1000000".into())
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("VS_REDIS_SCALE_SESSIONS: {n:?} is not a count"))
            })
            .filter(|&n| n > 0)
            .collect();
        scale_sessions.sort_unstable();
        scale_sessions.dedup();
        Self {
            modes,
            calls: env_or("VS_REDIS_CALLS", 5_000usize).max(1),
            window: Duration::from_secs_f64(env_or("VS_REDIS_SECS", 2.0f64).max(0.1)),
            rounds: env_or("VS_REDIS_ROUNDS", 5usize).max(1),
            connections: env_or("VS_REDIS_CONNECTIONS", 4usize).clamp(1, IN_FLIGHT),
            node_workers: env_or("VS_REDIS_NODE_WORKERS", 0usize),
            scale: env_or("VS_REDIS_SCALE", 1u8) != 0 && !scale_sessions.is_empty(),
            scale_sessions,
            scale_group: env_or("VS_REDIS_SCALE_GROUP", 64usize).clamp(1, 1 << 16),
        }
    }
}
