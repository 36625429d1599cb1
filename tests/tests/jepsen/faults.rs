//! The seeded fault schedule and its injection: each round, some load, then one fault or
//! more (kill 50%, pause 30%, slow 20%), each on a node drawn from the seed or on the node
//! that is primary for the most sessions at that moment; all drawn up front from one seed,
//! so the same seed replays the same schedule.

use std::path::Path;
use std::time::{Duration, Instant};

use scone::{ClientId, ServiceId};
use scone_cluster::ClusterChannel;

use crate::cluster::Node;
use crate::profile::Profile;
use crate::run::Timeline;

#[derive(Clone, Copy, Debug)]
pub(crate) enum FaultKind {
    /// SIGKILL, then a restart on the same ports `down` later.
    Kill { down: Duration },
    /// SIGSTOP, then SIGCONT `paused` later.
    Pause { paused: Duration },
    /// A slow node: for `total`, stopped `stopped` (SIGSTOP), then running `running`
    /// (SIGCONT), again and again. It takes requests and runs some of them late, long
    /// after their callers gave up and went to another node.
    Slow {
        total: Duration,
        stopped: Duration,
        running: Duration,
    },
}

/// What the test does to a node at one moment of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    Kill,
    Stop,
    Continue,
    Restart,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault {
    /// Index into the nodes; `None`: the node that is primary for the most sessions when
    /// the fault starts (sessions stay with the primary that took them over, so without
    /// this the primaries end up on the nodes that were spared and the faults hit only
    /// secondaries).
    pub(crate) node: Option<usize>,
    /// From the round's first fault.
    pub(crate) at: Duration,
    pub(crate) kind: FaultKind,
}

impl Fault {
    /// What it does, when (from the round's first fault).
    pub(crate) fn actions(&self) -> Vec<(Duration, Action)> {
        match self.kind {
            FaultKind::Kill { down } => {
                vec![(self.at, Action::Kill), (self.at + down, Action::Restart)]
            }
            FaultKind::Pause { paused } => {
                vec![
                    (self.at, Action::Stop),
                    (self.at + paused, Action::Continue),
                ]
            }
            FaultKind::Slow {
                total,
                stopped,
                running,
            } => {
                let mut actions = Vec::new();
                let mut at = Duration::ZERO;
                while at < total {
                    actions.push((self.at + at, Action::Stop));
                    at += stopped;
                    actions.push((self.at + at, Action::Continue));
                    at += running;
                }
                actions
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Round {
    /// Load before the first fault (after the cluster recovered from the last round).
    pub(crate) load_before: Duration,
    /// On distinct nodes; no more than the profile's `max_faults`.
    pub(crate) faults: Vec<Fault>,
}

pub(crate) fn ms(rng: &mut fastrand::Rng, range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(rng.u64(range))
}

/// The whole schedule, drawn from `seed` before anything runs: the same seed, the same
/// schedule, however the run goes.
pub(crate) fn schedule(profile: &Profile, seed: u64) -> Vec<Round> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..profile.rounds)
        .map(|_| {
            let load_before = ms(&mut rng, 300..=1200);
            let count = rng.usize(1..=profile.max_faults);
            let mut nodes: Vec<usize> = (0..profile.nodes).collect();
            rng.shuffle(&mut nodes);
            let faults = nodes[..count]
                .iter()
                .enumerate()
                .map(|(i, &node)| {
                    // Faults of one round start together or a little apart.
                    let at = if i == 0 {
                        Duration::ZERO
                    } else {
                        ms(&mut rng, 0..=400)
                    };
                    let kind = match rng.u8(0..10) {
                        0..=4 => FaultKind::Kill {
                            down: ms(&mut rng, 500..=1500),
                        },
                        5..=7 => FaultKind::Pause {
                            paused: ms(&mut rng, 1000..=2000),
                        },
                        _ => FaultKind::Slow {
                            total: ms(&mut rng, 1000..=2000),
                            stopped: ms(&mut rng, 150..=400),
                            running: ms(&mut rng, 20..=100),
                        },
                    };
                    let node = if rng.bool() { None } else { Some(node) };
                    Fault { node, at, kind }
                })
                .collect();
            Round {
                load_before,
                faults,
            }
        })
        .collect()
}

pub(crate) fn describe(fault: &Fault) -> String {
    let node = match fault.node {
        Some(index) => format!("node-{}", index + 1),
        None => "the busiest primary".into(),
    };
    match fault.kind {
        FaultKind::Kill { down } => format!("kill {node} for {} ms", down.as_millis()),
        FaultKind::Pause { paused } => format!("pause {node} for {} ms", paused.as_millis()),
        FaultKind::Slow {
            total,
            stopped,
            running,
        } => format!(
            "slow {node} for {} ms (stopped {} ms, running {} ms, over and over)",
            total.as_millis(),
            stopped.as_millis(),
            running.as_millis()
        ),
    }
}

/// The node, not in `spared`, that the most sessions' tokens name as primary (the lowest
/// index among equals), and how many.
pub(crate) fn busiest_primary(
    nodes: &[Node],
    channel: &ClusterChannel,
    service: &ServiceId,
    ids: &[ClientId],
    spared: &[usize],
) -> (usize, usize) {
    let mut counts = vec![0; nodes.len()];
    for id in ids {
        if let Some(token) = channel.token(*id, service) {
            if let Some(index) = nodes.iter().position(|n| n.ports.rpc == token.primary) {
                counts[index] += 1;
            }
        }
    }
    (0..nodes.len())
        .filter(|index| !spared.contains(index))
        .map(|index| (index, counts[index]))
        .max_by_key(|&(index, count)| (count, std::cmp::Reverse(index)))
        .unwrap_or((0, 0))
}

// ---------------------------------------------------------------------------------------
// Ports and nodes.

/// Runs `round`'s faults on `nodes`, each action at its time from now; the busiest primary
/// is counted over the tokens `channel` holds for `ids`.
pub(crate) async fn inject(
    round: &Round,
    nodes: &mut [Node],
    channel: &ClusterChannel,
    service: &ServiceId,
    ids: &[ClientId],
    binary: &Path,
    timeline: &Timeline,
) -> anyhow::Result<()> {
    // Each fault's actions, at their times from the round's start.
    let mut events: Vec<(Duration, Action, usize)> = Vec::new();
    for (index, fault) in round.faults.iter().enumerate() {
        events.extend(
            fault
                .actions()
                .into_iter()
                .map(|(at, action)| (at, action, index)),
        );
    }
    events.sort();
    // The node each fault hits, once it started; and its actions still to come.
    let mut hit: Vec<Option<usize>> = round.faults.iter().map(|fault| fault.node).collect();
    let mut left: Vec<usize> = (0..round.faults.len())
        .map(|index| events.iter().filter(|(_, _, i)| *i == index).count())
        .collect();
    let round_started = Instant::now();
    for (at, action, index) in events {
        tokio::time::sleep_until((round_started + at).into()).await;
        let target = match hit[index] {
            Some(target) => target,
            None => {
                let spared: Vec<usize> = hit.iter().flatten().copied().collect();
                let (target, count) = busiest_primary(nodes, channel, service, ids, &spared);
                timeline.say(format_args!(
                    "  the busiest primary: node-{} ({count} sessions)",
                    target + 1
                ));
                hit[index] = Some(target);
                target
            }
        };
        left[index] -= 1;
        let slow = matches!(round.faults[index].kind, FaultKind::Slow { .. });
        let node = &mut nodes[target];
        match action {
            Action::Kill => {
                let pid = node.pid();
                let (status, reaped) = node.kill().await?;
                timeline.say(format_args!(
                    "  {} killed (pid {pid}, {status}; reaped {} ms after the signal)",
                    node.name(),
                    reaped.as_millis()
                ));
            }
            Action::Restart => {
                node.start(binary).await?;
                timeline.say(format_args!(
                    "  {} restarted (pid {}), empty, on the same ports",
                    node.name(),
                    node.pid()
                ));
            }
            Action::Stop => {
                node.pause()?;
                if !slow {
                    timeline.say(format_args!("  {} paused (SIGSTOP)", node.name()));
                } else if at == round.faults[index].at {
                    timeline.say(format_args!(
                        "  {} slowed: SIGSTOP, SIGCONT, again and again",
                        node.name()
                    ));
                }
            }
            Action::Continue => {
                node.resume()?;
                if !slow {
                    timeline.say(format_args!("  {} resumed (SIGCONT)", node.name()));
                } else if left[index] == 0 {
                    timeline.say(format_args!("  {} runs at full speed again", node.name()));
                }
            }
        }
    }
    Ok(())
}
