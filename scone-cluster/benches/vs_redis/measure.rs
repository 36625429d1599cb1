//! What is measured and how it is shown: sequential latency, throughput with every session
//! keeping one update in flight, the CPU time behind each update (read from `/proc`), and
//! the table of modes with their ratios to Redis.

use std::time::{Duration, Instant};

use crate::cluster::cart_state_bytes;
use crate::session::{open_sessions, Session, Target};
use crate::settings::{Mode, Settings};
use crate::{bounded_by, CLIENT_THREAD, IN_FLIGHT, LIMIT, VALUE_BYTES};

/// Sequential updates per mode before the measured ones.
const WARMUP_CALLS: usize = 300;

// ---------------------------------------------------------------- CPU time

/// User + system CPU seconds in a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// User + system CPU seconds of process `pid`.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
pub fn thread_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| {
            let name = stat.split_once('(').map_or("", |(_, rest)| rest);
            name.starts_with(prefix)
        })
        .map(|stat| stat_cpu_seconds(&stat))
        .sum()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

// ---------------------------------------------------------------- latency and throughput

/// One mode's sequential updates.
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    errors: usize,
}

/// Sequential updates, one session per mode, the modes taking turns call by call in a
/// rotating order.
pub async fn sequential(targets: &[(Mode, Target)], calls: usize) -> Vec<Latency> {
    let mut sessions = Vec::new();
    for (_, target) in targets {
        sessions.push(open_sessions(target, 1, 1).await.remove(0));
    }
    let mut samples = vec![Vec::with_capacity(calls); targets.len()];
    let mut errors = vec![0; targets.len()];
    for i in 0..WARMUP_CALLS + calls {
        for turn in 0..targets.len() {
            let index = (i + turn) % targets.len();
            let start = Instant::now();
            let ok = sessions[index].update().await;
            let elapsed = start.elapsed();
            errors[index] += usize::from(!ok);
            if i >= WARMUP_CALLS {
                samples[index].push(elapsed);
            }
        }
    }
    samples
        .into_iter()
        .zip(errors)
        .map(|(mut samples, errors)| {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            Latency {
                p50_us: at(0.50).as_secs_f64() * 1e6,
                p99_us: at(0.99).as_secs_f64() * 1e6,
                errors,
            }
        })
        .collect()
}

/// One mode's throughput in one round.
pub struct Rate {
    calls_per_second: f64,
    server_us: f64,
    client_us: f64,
    errors: usize,
}

/// Updates per second with every session of `sessions` keeping one in flight for
/// `window`; the sessions are handed back for the next round.
async fn throughput(target: &Target, sessions: &mut Vec<Session>, window: Duration) -> Rate {
    let (server_before, client_before) = (
        target.server_cpu_seconds(),
        thread_cpu_seconds(CLIENT_THREAD),
    );
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .drain(..)
        .map(|mut session| {
            tokio::spawn(async move {
                let (mut calls, mut errors) = (0usize, 0usize);
                while start.elapsed() < window {
                    errors += usize::from(!session.update().await);
                    calls += 1;
                }
                (session, calls, errors)
            })
        })
        .collect();
    let (mut total, mut errors) = (0, 0);
    for task in tasks {
        let (session, calls, wrong) = bounded_by(window + LIMIT, "a throughput session", task)
            .await
            .expect("a throughput session panicked");
        sessions.push(session);
        total += calls;
        errors += wrong;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_call = |seconds: f64| seconds * 1e6 / total.max(1) as f64;
    Rate {
        calls_per_second: total as f64 / elapsed,
        server_us: per_call(target.server_cpu_seconds() - server_before),
        client_us: per_call(thread_cpu_seconds(CLIENT_THREAD) - client_before),
        errors,
    }
}

/// [`throughput`] of every mode for `settings.rounds` rounds, each round running every
/// mode once in a rotating order, on [`IN_FLIGHT`] sessions per mode opened once; each
/// mode's rates, a round each.
pub async fn rounds(targets: &[(Mode, Target)], settings: &Settings) -> Vec<Vec<Rate>> {
    let mut sessions = Vec::new();
    for (_, target) in targets {
        sessions.push(open_sessions(target, IN_FLIGHT, settings.connections).await);
    }
    let mut rates: Vec<Vec<Rate>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for turn in 0..targets.len() {
            let index = (round + turn) % targets.len();
            let rate = throughput(&targets[index].1, &mut sessions[index], settings.window).await;
            eprintln!(
                "round {round} {:<18} {:>8.0} updates/s  CPU per update: server {:>5.1} us, client {:>5.1} us",
                targets[index].0.name(),
                rate.calls_per_second,
                rate.server_us,
                rate.client_us
            );
            rates[index].push(rate);
        }
    }
    drop(sessions);
    rates
}

// ---------------------------------------------------------------- the table

/// What the sequential and throughput runs measured, a row per mode.
pub struct Results {
    pub latencies: Vec<Latency>,
    /// Each mode's rates, a round each.
    pub rates: Vec<Vec<Rate>>,
    /// The row the others are compared with: Redis, if it ran.
    pub baseline: Option<usize>,
}

impl Results {
    /// Row `index`'s p50 over the baseline's.
    pub fn p50_ratio(&self, index: usize) -> Option<f64> {
        self.baseline
            .map(|b| self.latencies[index].p50_us / self.latencies[b].p50_us)
    }

    /// The median over rounds of row `index`'s updates/s over the baseline's in the same
    /// round.
    pub fn throughput_ratio(&self, index: usize) -> Option<f64> {
        self.baseline.map(|b| {
            median(
                self.rates[index]
                    .iter()
                    .zip(&self.rates[b])
                    .map(|(x, base)| x.calls_per_second / base.calls_per_second)
                    .collect(),
            )
        })
    }

    /// Prints the table (stdout), SCONE's throughput ratio by round when `scone` and the
    /// baseline both ran, and a warning if any update came back wrong.
    pub fn print_table(&self, targets: &[(Mode, Target)], scone: Option<usize>) {
        let (latencies, rates, baseline) = (&self.latencies, &self.rates, self.baseline);
        let or_dash = |ratio: Option<f64>| ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
        println!();
        println!(
            "SCONE: 3 cart nodes, k = 1, cart state {} B (postcard) at the start, {} B after 10,000 updates; Redis: values of {VALUE_BYTES} B",
            cart_state_bytes(0),
            cart_state_bytes(10_000)
        );
        println!(
            "| mode | p50 us | p99 us | updates/s ({IN_FLIGHT} in flight) | server CPU us/update | client CPU us/update | p50 vs redis | updates/s vs redis | errors |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (index, (mode, _)) in targets.iter().enumerate() {
            let rate = |f: fn(&Rate) -> f64| median(rates[index].iter().map(f).collect());
            let errors =
                latencies[index].errors + rates[index].iter().map(|r| r.errors).sum::<usize>();
            println!(
                "| {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {} | {} | {errors} |",
                mode.name(),
                latencies[index].p50_us,
                latencies[index].p99_us,
                rate(|r| r.calls_per_second),
                rate(|r| r.server_us),
                rate(|r| r.client_us),
                or_dash(self.p50_ratio(index)),
                or_dash(self.throughput_ratio(index)),
            );
        }
        if let (Some(scone), Some(base)) = (scone, baseline) {
            let by_round: Vec<String> = rates[scone]
                .iter()
                .zip(&rates[base])
                .map(|(x, b)| format!("{:.3}", x.calls_per_second / b.calls_per_second))
                .collect();
            println!("scone/redis throughput by round: {}", by_round.join(" "));
        }
        let errors: usize = latencies.iter().map(|l| l.errors).sum::<usize>()
            + rates.iter().flatten().map(|r| r.errors).sum::<usize>();
        if errors > 0 {
            println!(
                "warning: {errors} updates came back wrong (a cart not as expected, or WAIT not 1)"
            );
        }
    }
}
