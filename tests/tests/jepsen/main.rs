//! A randomized fault test, Jepsen-style: a cluster of `cart-server --placement cluster`
//! processes on 127.0.0.1 under a load of many sessions, with nodes killed (SIGKILL) and
//! restarted, paused (SIGSTOP, then SIGCONT: a node cut off for a while) and slowed
//! (SIGSTOP and SIGCONT over and over: a slow link, whose node runs requests long after
//! their callers gave up on it), round after round. Then a checker reads every session
//! back and proves that every acknowledged update is there, and that no session went
//! backwards.
//!
//! ```sh
//! cargo test -p tests --test jepsen -- --nocapture                        # short profile (CI)
//! JEPSEN_PROFILE=long cargo test -p tests --test jepsen -- --nocapture    # longer
//! JEPSEN_SEED=N cargo test -p tests --test jepsen -- --nocapture          # replay seed N
//! ```
//!
//! **Profiles.** `short` (the default, what CI runs): 3 nodes, k = 1, 4 rounds of one
//! fault each. `long` (`JEPSEN_PROFILE=long`): 5 nodes, k = 2, 12 rounds of one or two
//! faults at once. `JEPSEN_ROUNDS=N` changes the number of rounds of either;
//! `JEPSEN_ATTEMPT_MS=N` the client's attempt timeout (default 500 ms, the channel's
//! default): shorter, more calls time out on a slow node and run again on another while
//! the first may still run (what a loaded machine does too). `JEPSEN_SEALED=1` runs the
//! nodes with a cluster secret (sealed peer links).
//!
//! **Seed.** The fault schedule (which nodes, which fault, when, for how long) is drawn
//! up front from one seed: `JEPSEN_SEED`, or the clock. The test prints `seed=N` first,
//! and again when it fails; `JEPSEN_SEED=N` replays the same schedule on the same ports.
//! Timing is not replayed: which calls are in flight when a fault hits depends on the
//! machine.
//!
//! **Faults.** Each round: load for a while, then the round's faults (kill 50%, pause
//! 30%, slow 20%), each on a node drawn from the seed or on the node that is primary for
//! the most sessions at that moment (also drawn). k = 1 tolerates one failure at a time, so the short profile has one
//! fault per round; with k = 2, up to two nodes at once. A killed node loses its memory;
//! it is restarted on the same ports (picked up front, below the ephemeral range) and
//! rejoins empty. Before the next round the test waits (bounded) until the cluster has
//! recovered: every node sees every node as a member, and every session had an update
//! acknowledged that was sent after the last fault healed (so it holds k + 1 copies on
//! nodes that are up again; without this, two faults in a row could take both copies of a
//! session that was idle meanwhile, the known limit of k = 1).
//!
//! **Load.** Sessions on one shared `ClusterChannel` (thin clients: the channel keeps each
//! session's routing token), each adding a unique item `s{session}-u{n}` every few hundred
//! milliseconds. After each acknowledged `add` the test records the version the token
//! names, and checks that the reply holds every item seen in an earlier reply and that the
//! version went up. Each session keeps a line per call (when, which node, which token or
//! error): a violation shows the calls around the item that went missing.
//!
//! **Checker.** Once the load stopped and every fault healed, for every session: read the
//! cart twice, then add one more item. Every acknowledged item must be in the cart (lost =
//! 0); the second read must hold all of the first; the last `add` must be acknowledged at a
//! version above every version acknowledged before. Items added twice (a call run again
//! on another node after a failover: at least once) are allowed and counted. Failed calls
//! are counted by refusal kind or error, with their retry advice.
//!
//! **Failure.** The test panics with the seed, the failed checks and the last lines of
//! each node's log; the timeline it printed as it went shows the faults and recoveries.
//! A round after which the cluster does not recover within 20 s ends the faults; the
//! checker still runs and says what the cluster kept.
//!
//! **Logs.** `JEPSEN_NODE_LOG` sets the nodes' `RUST_LOG` (default: warnings and the
//! cluster's notes); `JEPSEN_LOG_DIR=DIR` also writes each node's whole log to
//! `DIR/node-N.log`, to follow one session through a run.
//!
//! **Binary.** It builds the `cart-server` example with the cargo that runs the test
//! (`examples::procs::build_for_test`); `JEPSEN_CART_SERVER=PATH` runs that binary
//! instead.

mod checker;
mod cluster;
mod faults;
mod load;
mod profile;
mod recovery;
mod run;
mod session;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use examples::procs::{self, Binary};

use crate::cluster::SharedLog;
use crate::profile::{replay, seed, Profile, SeedOnPanic};
use crate::run::{run, Timeline};

/// Lines of each node's log shown when the test fails.
const LOG_SHOW: usize = 50;

/// A lock that a panic elsewhere does not poison.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `cart-server` example: `JEPSEN_CART_SERVER`, or built with the cargo that runs
/// the test.
fn cart_server() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("JEPSEN_CART_SERVER") {
        return Ok(path.into());
    }
    let binaries = procs::build_for_test(&[Binary::example("examples", "cart-server")])?;
    Ok(binaries[0].clone())
}

#[test]
fn acknowledged_updates_survive_random_kills_and_pauses() {
    let profile = Profile::from_env().expect("JEPSEN_PROFILE / JEPSEN_ROUNDS");
    let seed = seed().expect("JEPSEN_SEED");
    let _seed_on_panic = SeedOnPanic(format!("seed={seed}; replay: {}", replay(seed, &profile)));
    println!(
        "jepsen: seed={seed} profile={}: {} nodes, k = {}, {} rounds of up to {} fault(s) at \
         once, {} sessions, attempt timeout {} ms{}",
        profile.name,
        profile.nodes,
        profile.replicas,
        profile.rounds,
        profile.max_faults,
        profile.sessions,
        profile.attempt_timeout.as_millis(),
        match profile.sealed {
            true => ", sealed links",
            false => "",
        }
    );
    println!(
        "   replay: {} (the same schedule; timing differs)",
        replay(seed, &profile)
    );
    let built = Instant::now();
    let binary = cart_server().expect("building cart-server");
    println!(
        "   cart-server: {} (built or found in {:.1} s)",
        binary.display(),
        built.elapsed().as_secs_f64()
    );
    let logs: Vec<SharedLog> = (0..profile.nodes).map(|_| SharedLog::default()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let timeline = Timeline(Instant::now());
    let outcome = runtime.block_on(async {
        tokio::time::timeout(
            profile.budget,
            run(&profile, seed, &binary, &logs, &timeline),
        )
        .await
    });
    // Every node process is gone by now (killed at the end, or when dropped).
    drop(runtime);
    let failures = match outcome {
        Ok(Ok(report)) => report.failures,
        Ok(Err(error)) => vec![format!("the run stopped: {error:#}")],
        Err(_) => vec![format!("the run took more than {:?}", profile.budget)],
    };
    if failures.is_empty() {
        println!(
            "jepsen: seed={seed} profile={}: ok, {:.1} s",
            profile.name,
            timeline.0.elapsed().as_secs_f64()
        );
        return;
    }
    for (index, log) in logs.iter().enumerate() {
        let log = lock(log);
        println!(
            "--- node-{}: its last {} of {} lines on standard error",
            index + 1,
            log.lines.len().min(LOG_SHOW),
            log.total
        );
        let skip = log.lines.len().saturating_sub(LOG_SHOW);
        for line in log.lines.iter().skip(skip) {
            println!("{line}");
        }
    }
    panic!(
        "jepsen: seed={seed} profile={}: {} failure(s):\n  {}\nreplay: {}",
        profile.name,
        failures.len(),
        failures.join("\n  "),
        replay(seed, &profile)
    );
}
