//! How big and how long a run is (`JEPSEN_PROFILE`, `JEPSEN_ROUNDS`,
//! `JEPSEN_ATTEMPT_MS`), its seed (`JEPSEN_SEED`, or the clock), and the command that
//! replays it.

use std::time::Duration;

use anyhow::{bail, Context};
use scone_cluster::ClusterClientConfig;

/// How big and how long a run is.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub(crate) name: &'static str,
    pub(crate) nodes: usize,
    /// k: copies of each new version made before the reply.
    pub(crate) replicas: usize,
    pub(crate) rounds: usize,
    pub(crate) sessions: usize,
    /// Each session sends its next `add` this long after the last one was sent.
    pub(crate) pace: Duration,
    /// Most nodes killed or paused at once: at most k.
    pub(crate) max_faults: usize,
    /// Bound of the whole run once the binary is built.
    pub(crate) budget: Duration,
    /// The client's attempt timeout (`ClusterClientConfig::attempt_timeout`).
    pub(crate) attempt_timeout: Duration,
    /// Whether the nodes' peer links are sealed with a cluster secret
    /// (`--cluster-secret-file`).
    pub(crate) sealed: bool,
}

impl Profile {
    pub(crate) fn short() -> Self {
        Self {
            name: "short",
            nodes: 3,
            replicas: 1,
            rounds: 4,
            sessions: 32,
            pace: Duration::from_millis(250),
            max_faults: 1,
            budget: Duration::from_secs(150),
            attempt_timeout: ClusterClientConfig::default().attempt_timeout,
            sealed: false,
        }
    }

    pub(crate) fn long() -> Self {
        Self {
            name: "long",
            nodes: 5,
            replicas: 2,
            rounds: 12,
            sessions: 48,
            pace: Duration::from_millis(300),
            max_faults: 2,
            budget: Duration::from_secs(900),
            attempt_timeout: ClusterClientConfig::default().attempt_timeout,
            sealed: false,
        }
    }

    /// `JEPSEN_PROFILE` (`short` or `long`), `JEPSEN_ROUNDS`, `JEPSEN_ATTEMPT_MS` and
    /// `JEPSEN_SEALED` (`1`: peer links sealed with a cluster secret).
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let mut profile = match std::env::var("JEPSEN_PROFILE").as_deref() {
            Err(_) | Ok("") | Ok("short") => Self::short(),
            Ok("long") => Self::long(),
            Ok(other) => bail!("JEPSEN_PROFILE={other:?}: expected `short` or `long`"),
        };
        if let Ok(rounds) = std::env::var("JEPSEN_ROUNDS") {
            profile.rounds = rounds
                .parse()
                .with_context(|| format!("JEPSEN_ROUNDS={rounds:?} is not a number"))?;
            // Each round takes a few seconds: keep the bound in step.
            profile.budget += Duration::from_secs(20) * profile.rounds as u32;
        }
        if let Ok(ms) = std::env::var("JEPSEN_ATTEMPT_MS") {
            let ms: u64 = ms
                .parse()
                .with_context(|| format!("JEPSEN_ATTEMPT_MS={ms:?} is not a number"))?;
            profile.attempt_timeout = Duration::from_millis(ms.max(1));
        }
        if std::env::var_os("JEPSEN_TRUSTED").is_some() {
            bail!("JEPSEN_TRUSTED is gone (members no longer trust each other's copies); JEPSEN_SEALED=1 seals the links");
        }
        profile.sealed = match std::env::var("JEPSEN_SEALED").as_deref() {
            Err(_) | Ok("") | Ok("0") => false,
            Ok("1") => true,
            Ok(other) => bail!("JEPSEN_SEALED={other:?}: expected 0 or 1"),
        };
        anyhow::ensure!(
            profile.max_faults <= profile.replicas && profile.replicas < profile.nodes,
            "a profile may fault at most k nodes at once, and needs more than k nodes"
        );
        Ok(profile)
    }
}

/// `JEPSEN_SEED`, or one from the clock.
pub(crate) fn seed() -> anyhow::Result<u64> {
    match std::env::var("JEPSEN_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("JEPSEN_SEED={text:?} is not a number")),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // Microseconds: short enough to type back.
            Ok(u64::try_from(now.as_micros()).unwrap_or(u64::MAX) ^ u64::from(std::process::id()))
        }
    }
}

/// The command that replays `seed` in `profile`.
pub(crate) fn replay(seed: u64, profile: &Profile) -> String {
    let (mut env, default) = match profile.name {
        "long" => (" JEPSEN_PROFILE=long".to_owned(), Profile::long()),
        _ => (String::new(), Profile::short()),
    };
    if profile.rounds != default.rounds {
        env += &format!(" JEPSEN_ROUNDS={}", profile.rounds);
    }
    if profile.attempt_timeout != default.attempt_timeout {
        env += &format!(" JEPSEN_ATTEMPT_MS={}", profile.attempt_timeout.as_millis());
    }
    if profile.sealed {
        env += " JEPSEN_SEALED=1";
    }
    format!("JEPSEN_SEED={seed}{env} cargo test -p tests --test jepsen -- --nocapture")
}

/// Prints the seed again if the test panics (an `expect` anywhere), so the failure
/// replays.
pub(crate) struct SeedOnPanic(pub(crate) String);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("jepsen FAILED: {}", self.0);
        }
    }
}
