//! The run, from the schedule to the report: start the cluster, wait for its membership,
//! start the load, then round after round of faults, each followed by a bounded wait for
//! the cluster to recover; then stop the load and run the checker. It narrates on a
//! [`Timeline`] as it goes.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use examples::procs;

use crate::checker::{self, Report};
use crate::cluster::{self, SharedLog};
use crate::faults::{self, describe, schedule};
use crate::load;
use crate::profile::Profile;
use crate::recovery::{settle, straggler, SETTLE_LIMIT};

/// The test's clock and narration.
pub(crate) struct Timeline(pub(crate) Instant);

impl Timeline {
    pub(crate) fn say(&self, text: impl std::fmt::Display) {
        println!("t={:6.2}s {text}", self.0.elapsed().as_secs_f64());
    }
}

/// The whole run of `profile` with `seed` on nodes of `binary`, their standard error kept
/// in `logs`: what the checker found.
pub(crate) async fn run(
    profile: &Profile,
    seed: u64,
    binary: &Path,
    logs: &[SharedLog],
    timeline: &Timeline,
) -> anyhow::Result<Report> {
    let rounds = schedule(profile, seed);
    for (number, round) in rounds.iter().enumerate() {
        let faults: Vec<String> = round
            .faults
            .iter()
            .map(|fault| format!("{} at +{} ms", describe(fault), fault.at.as_millis()))
            .collect();
        println!(
            "   round {}: {} ms of load, then {}",
            number + 1,
            round.load_before.as_millis(),
            faults.join(", ")
        );
    }

    let dir = procs::TempDir::new("jepsen")?;
    let (_key, key_file) = procs::signing_key(&dir)?;
    let mut nodes = cluster::nodes(profile, seed, &key_file, logs)?;
    for node in &mut nodes {
        node.start(binary).await?;
        timeline.say(format_args!(
            "{} up (pid {}): clients {}, peers {}, gossip {}, metrics {}",
            node.name(),
            node.pid(),
            node.ports.rpc,
            node.ports.peer,
            node.ports.gossip,
            node.ports.metrics
        ));
    }
    let recovery = settle(&nodes, None, SETTLE_LIMIT).await?;
    timeline.say(format_args!(
        "membership converged ({} ms): every node sees {}",
        recovery.took.as_millis(),
        nodes.len()
    ));

    let mut running = load::start(profile, &nodes, timeline.0)?;
    timeline.say(format_args!(
        "load: {} sessions on one ClusterChannel, one add each every {} ms",
        profile.sessions,
        profile.pace.as_millis()
    ));
    let recovery = settle(
        &nodes,
        Some((&running.board, running.started)),
        SETTLE_LIMIT,
    )
    .await?;
    timeline.say(format_args!(
        "every session acknowledged ({} ms)",
        recovery.took.as_millis()
    ));

    // The rounds.
    let total = rounds.len();
    let mut not_recovered = None;
    for (number, round) in rounds.iter().enumerate() {
        let number = number + 1;
        let tally = &running.tally;
        let (acked_before, failed_before) = (
            tally.acked.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        // The schedule's pacing, not a wait for anything.
        tokio::time::sleep(round.load_before).await;
        let faults: Vec<String> = round.faults.iter().map(describe).collect();
        timeline.say(format_args!(
            "round {number}/{total}: {}",
            faults.join(", ")
        ));
        faults::inject(
            round,
            &mut nodes,
            &running.channel,
            &running.service,
            &running.ids,
            binary,
            timeline,
        )
        .await?;
        let healed = Instant::now();
        let recovery = match settle(&nodes, Some((&running.board, healed)), SETTLE_LIMIT).await {
            Ok(recovery) => recovery,
            Err(error) => {
                // No more faults: the checker says what the cluster still holds.
                timeline.say(format_args!("  round {number}: {error:#}"));
                not_recovered = Some(format!("round {number}: {error:#}"));
                break;
            }
        };
        timeline.say(format_args!(
            "  recovered {} ms after the faults healed (membership {} ms, sessions {} ms); \
             this round: {} acknowledged, {} failed",
            recovery.took.as_millis(),
            recovery.members.as_millis(),
            recovery.sessions.as_millis(),
            tally.acked.load(Ordering::Relaxed) - acked_before,
            tally.failed.load(Ordering::Relaxed) - failed_before
        ));
        for straggler in recovery.stragglers.iter().map(|s| straggler(s, healed)) {
            println!("     slow to recover: {straggler}");
        }
    }

    // Stop the load; every call is bounded.
    let mut sessions = running.stop().await?;
    let calls: usize = sessions.iter().map(|s| s.calls).sum();
    let acknowledged: usize = sessions.iter().map(|s| s.acked.len()).sum();
    timeline.say(format_args!(
        "load stopped after {:.1} s: {calls} calls, {acknowledged} acknowledged, {} failed",
        running.started.elapsed().as_secs_f64(),
        calls - acknowledged
    ));
    for (error, count) in &load::errors(&sessions) {
        println!("     {count} x {error}");
    }

    // The checker.
    timeline.say("checker: every session read twice, then one more add");
    let mut report = Report::default();
    report.check(
        "the cluster recovered after every round",
        not_recovered.is_none(),
        not_recovered.unwrap_or_default(),
    );
    checker::check(
        &mut report,
        &mut sessions,
        &running,
        &nodes,
        profile.replicas,
    )
    .await;

    for node in &mut nodes {
        if node.process.is_some() {
            node.kill().await?;
        }
    }
    Ok(report)
}
