//! How the command prints times: RFC 3339 dates, and spans in the `--ttl` syntax.
//!
//! Every instant is a date (`2030-01-01T12:00:00.000Z`), with where it helps its distance
//! from now (`in 29m 59s`, `3s ago`); every span (a lifetime, the clock-skew allowance) is
//! written as `--ttl` and `--max-ttl` take it (`30m`, `1h 30m`). Never raw milliseconds:
//! `--json` carries those beside the dates, for scripts.

use std::time::Duration;

/// Milliseconds since the epoch of 10000-01-01: RFC 3339 (and humantime) stop at 9999.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

/// `ms` since the epoch as an RFC 3339 date, to the millisecond.
pub fn date(ms: u64) -> String {
    if ms >= YEAR_10000_MS {
        return format!("{ms} ms after the epoch (after the year 9999)");
    }
    humantime::format_rfc3339_millis(scone::clock::to_system_time(ms)).to_string()
}

/// A span of `ms`: whole seconds from one second up (`29m 59s`), milliseconds below it.
pub fn span_ms(ms: u64) -> String {
    let span = if ms >= 1000 {
        Duration::from_secs(ms / 1000)
    } else {
        Duration::from_millis(ms)
    };
    humantime::format_duration(span).to_string()
}

/// A span given as a `Duration`, as [`span_ms`] writes it.
pub fn span(duration: Duration) -> String {
    span_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` relative to `now_ms`: `in 29m 59s` or `3s ago`.
pub fn relative(ms: u64, now_ms: u64) -> String {
    if ms >= now_ms {
        format!("in {}", span_ms(ms - now_ms))
    } else {
        format!("{} ago", span_ms(now_ms - ms))
    }
}

/// `ms` as a date and its distance from now: `2030-01-01T12:00:00.000Z (in 29m 59s)`.
pub fn date_and_relative(ms: u64, now_ms: u64) -> String {
    format!("{} ({})", date(ms), relative(ms, now_ms))
}
