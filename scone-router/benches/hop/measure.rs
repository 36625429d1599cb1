//! What is measured and how it is shown: sequential latency, throughput with every client
//! keeping one call in flight, the proxies' CPU time per call (read from `/proc`), and the
//! table of modes with their ratios to HAProxy.

use std::time::Instant;

use crate::settings::Settings;
use crate::target::{add, clients, expected, Target};
use crate::{bounded, bounded_by, IN_FLIGHT, LIMIT};

/// Sequential calls per mode before the measured ones.
const WARMUP_CALLS: usize = 300;

/// User + system CPU seconds of process `pid`, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

// ---------------------------------------------------------------- latency and throughput

/// One mode's sequential calls.
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    state_errors: usize,
}

/// `calls` sequential calls per target (after a warm-up), one client each on its own
/// connection, the targets taking turns call by call in a rotating order.
pub async fn sequential(targets: &[Target], calls: usize) -> Vec<Latency> {
    let mut callers = Vec::new();
    for target in targets {
        callers.push(clients(target, 1, 1).await.remove(0));
    }
    let mut samples = vec![Vec::with_capacity(calls); targets.len()];
    let mut errors = vec![0; targets.len()];
    for i in 0..WARMUP_CALLS + calls {
        for turn in 0..targets.len() {
            let index = (i + turn) % targets.len();
            let start = Instant::now();
            let quantity = add(&callers[index]).await;
            let elapsed = start.elapsed();
            if quantity != expected(i + 1) {
                errors[index] += 1;
            }
            if i >= WARMUP_CALLS {
                samples[index].push(elapsed);
            }
        }
    }
    samples
        .into_iter()
        .zip(errors)
        .map(|(mut samples, state_errors)| {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            Latency {
                p50_us: at(0.50).as_secs_f64() * 1e6,
                p99_us: at(0.99).as_secs_f64() * 1e6,
                state_errors,
            }
        })
        .collect()
}

/// One mode's throughput in one round.
pub struct Rate {
    calls_per_second: f64,
    proxy_us_per_call: f64,
    state_errors: usize,
}

/// Calls per second with [`IN_FLIGHT`] fresh clients each keeping one call in flight for
/// `settings.window`, after one warm-up call each.
async fn throughput(target: &Target, settings: &Settings) -> Rate {
    let callers = clients(target, IN_FLIGHT, settings.connections).await;
    // One call each first, all at once: the 64 sessions exist before the clock starts.
    let warm = futures::future::join_all(callers.iter().map(add));
    for quantity in bounded("the warm-up calls", warm).await {
        assert_eq!(quantity, 1, "{}: a new session", target.mode.name());
    }
    let cpu_before = target.proxy_cpu_seconds();
    let start = Instant::now();
    let window = settings.window;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            tokio::spawn(async move {
                let (mut calls, mut errors) = (1usize, 0usize);
                while start.elapsed() < window {
                    let quantity = add(&caller).await;
                    calls += 1;
                    if quantity != expected(calls) {
                        errors += 1;
                    }
                }
                (calls - 1, errors)
            })
        })
        .collect();
    let (mut total, mut state_errors) = (0, 0);
    for task in tasks {
        let (calls, errors) = bounded_by(window + LIMIT, "a throughput client", task)
            .await
            .expect("a throughput client panicked");
        total += calls;
        state_errors += errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = target.proxy_cpu_seconds() - cpu_before;
    Rate {
        calls_per_second: total as f64 / elapsed,
        proxy_us_per_call: cpu * 1e6 / total.max(1) as f64,
        state_errors,
    }
}

/// [`throughput`] of every mode for `settings.rounds` rounds, each round running every
/// mode once in a rotating order; each mode's rates, a round each.
pub async fn rounds(targets: &[Target], settings: &Settings) -> Vec<Vec<Rate>> {
    let mut rates: Vec<Vec<Rate>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for turn in 0..targets.len() {
            let index = (round + turn) % targets.len();
            let rate = throughput(&targets[index], settings).await;
            eprintln!(
                "round {round} {:<10} {:>8.0} calls/s  proxy CPU {:>5.1} us/call",
                targets[index].mode.name(),
                rate.calls_per_second,
                rate.proxy_us_per_call
            );
            rates[index].push(rate);
        }
    }
    rates
}

// ---------------------------------------------------------------- the table

/// What the sequential and throughput runs measured, a row per mode.
pub struct Results {
    pub latencies: Vec<Latency>,
    /// Each mode's rates, a round each.
    pub rates: Vec<Vec<Rate>>,
    /// The row the others are compared with: HAProxy, if it ran.
    pub baseline: Option<usize>,
}

impl Results {
    /// Row `index`'s p50 over the baseline's.
    pub fn p50_ratio(&self, index: usize) -> Option<f64> {
        self.baseline
            .map(|h| self.latencies[index].p50_us / self.latencies[h].p50_us)
    }

    /// The median over rounds of each round's ratio of row `index`'s calls/s to the
    /// baseline's (rounds are paired).
    pub fn throughput_ratio(&self, index: usize) -> Option<f64> {
        self.baseline.map(|h| {
            median(
                self.rates[index]
                    .iter()
                    .zip(&self.rates[h])
                    .map(|(x, base)| x.calls_per_second / base.calls_per_second)
                    .collect(),
            )
        })
    }

    /// Prints the table (stdout).
    pub fn print_table(&self, targets: &[Target]) {
        let (latencies, rates) = (&self.latencies, &self.rates);
        let or_dash = |ratio: Option<f64>| ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
        println!();
        println!(
            "| mode | p50 us | p99 us | calls/s ({IN_FLIGHT} in flight) | proxy CPU us/call | p50 vs haproxy | calls/s vs haproxy | state errors |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (index, target) in targets.iter().enumerate() {
            let rate = |f: fn(&Rate) -> f64| median(rates[index].iter().map(f).collect());
            let errors: usize = latencies[index].state_errors
                + rates[index].iter().map(|r| r.state_errors).sum::<usize>();
            let proxy_cpu = match target.pids.is_empty() {
                true => "-".to_string(),
                false => format!("{:.1}", rate(|r| r.proxy_us_per_call)),
            };
            println!(
                "| {} | {:.1} | {:.1} | {:.0} | {proxy_cpu} | {} | {} | {errors} |",
                target.mode.name(),
                latencies[index].p50_us,
                latencies[index].p99_us,
                rate(|r| r.calls_per_second),
                or_dash(self.p50_ratio(index)),
                or_dash(self.throughput_ratio(index)),
            );
        }
    }

    /// Prints a warning if any reply showed a quantity other than its client's call count.
    pub fn print_errors(&self) {
        let (latencies, rates) = (&self.latencies, &self.rates);
        let errors: usize = latencies.iter().map(|l| l.state_errors).sum::<usize>()
            + rates
                .iter()
                .flatten()
                .map(|r| r.state_errors)
                .sum::<usize>();
        if errors > 0 {
            println!("warning: {errors} replies showed a quantity other than the client's call count (state lost or rolled back)");
        }
    }
}
