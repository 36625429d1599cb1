//! Where SCONE timestamps come from: the system clock, or a manual one for tests.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
///
/// Minters stamp `issued_at` / `expires_at` with it, verifiers and caches check expiry
/// against it. Tests use [`ManualClock`] to move time without sleeping.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock, read at the resolution of the kernel's tick where
/// that is cheaper.
///
/// It is read a few times on every request (a verify, a cache lookup and a store), and
/// SCONE times are milliseconds against lifetimes of seconds or more, checked with a
/// clock-skew allowance. So on Linux it reads `CLOCK_REALTIME_COARSE`: the time of the
/// last tick (1 to 10 ms behind), several times cheaper than the precise clock, whose
/// read is a measurable share of a request on a virtual machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        #[cfg(target_os = "linux")]
        if let Some(now_ms) = coarse_now_ms() {
            return now_ms;
        }
        // A clock set before 1970 reads as the epoch: every SCONE then looks fresh-issued,
        // which fails safe because expiry is checked against the same clock.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The coarse wall clock, or `None` if the kernel does not offer it (or reads before 1970).
#[cfg(target_os = "linux")]
fn coarse_now_ms() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points to a
    // live, properly aligned local; it touches no other memory.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    (result == 0).then(|| seconds * 1000 + nanos / 1_000_000)
}

/// A clock that moves only when told to; share it between a minter and a verifier in tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock that reads `now_ms`.
    pub fn new(now_ms: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(now_ms)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sets the clock to `now_ms`.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The clock used when none is given.
pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Milliseconds since the epoch as a `SystemTime`, for display.
pub fn to_system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_agrees_with_the_precise_wall_clock() {
        let precise_ms = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let before = precise_ms();
        let now = SystemClock.now_ms();
        let after = precise_ms();
        // The coarse clock lags by at most a tick (10 ms at the slowest common rate).
        assert!(
            now + 20 >= before && now <= after,
            "{before} <= {now} (+ a tick) <= {after}"
        );
    }
}
