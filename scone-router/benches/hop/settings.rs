//! The modes the bench can run and its settings, read from the environment (`HOP_*`).

use std::str::FromStr;
use std::time::Duration;

use crate::IN_FLIGHT;

/// What is measured: a direct call, or a call through HAProxy, a relay, or a relay mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Direct,
    Haproxy,
    Relay,
    RelayMesh,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Direct, Mode::Haproxy, Mode::Relay, Mode::RelayMesh];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Haproxy => "haproxy",
            Mode::Relay => "relay",
            Mode::RelayMesh => "relay-mesh",
        }
    }

    /// Thin clients (through a relay, which keeps their SCONEs) or caching ones.
    pub fn thin(self) -> bool {
        matches!(self, Mode::Relay | Mode::RelayMesh)
    }
}

/// The settings of one run.
pub struct Settings {
    pub calls: usize,
    pub window: Duration,
    pub rounds: usize,
    pub connections: usize,
    pub modes: Vec<Mode>,
    /// More flags for every `scone-relay` started (`HOP_RELAY_ARGS`), for experiments.
    pub relay_args: Vec<String>,
}

/// `name`'s value, or `default` when unset; a bad value stops the bench.
fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Settings {
    pub fn from_env() -> Self {
        let only = std::env::var("HOP_MODES").unwrap_or_default();
        let modes: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|mode| only.is_empty() || only.split(',').any(|m| m.trim() == mode.name()))
            .collect();
        assert!(
            !modes.is_empty(),
            "HOP_MODES={only:?} names no mode (direct, haproxy, relay, relay-mesh)"
        );
        Self {
            calls: env_or("HOP_CALLS", 5_000usize).max(1),
            window: Duration::from_secs_f64(env_or("HOP_SECS", 2.0f64).max(0.1)),
            rounds: env_or("HOP_ROUNDS", 5usize).max(1),
            connections: env_or("HOP_CONNECTIONS", 4usize).clamp(1, IN_FLIGHT),
            modes,
            relay_args: std::env::var("HOP_RELAY_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect(),
        }
    }
}
