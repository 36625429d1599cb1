//! Standard output that goes quiet once its reader has gone, and best-effort standard error.
//!
//! `scone pubkey KEY | head -n 1` closes the pipe after one line. Rust ignores SIGPIPE, so
//! the next write fails with `BrokenPipe`, on which `println!` panics (exit 101). Every
//! line the command prints goes through [`line`] instead, which drops the rest of the output
//! once the reader has gone and lets the command finish with its own exit status.
//!
//! Why not restore the default SIGPIPE disposition (with libc) at start, as C tools have
//! it? A process killed by SIGPIPE has no exit status of its own (shells show 141), so a
//! script under `set -o pipefail` that reads only the first line of `scone inspect` would
//! lose the verdict's exit status; that would also take `unsafe` and do nothing on Windows,
//! where a closed pipe gives the same `BrokenPipe` error. Other write errors (a full disk)
//! are still errors.

use std::fmt::Display;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

/// Set once a write found the reader gone: everything after it is dropped.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Prints `text` and a newline to standard output, unless its reader has gone.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    if READER_GONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    match written {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other.context("could not write to standard output"),
    }
}

/// Prints `text` and a newline to standard error; if that fails there is nowhere left to
/// say so, and the exit status still tells.
pub fn note(text: impl Display) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// `outln!("...", args)`: [`line`] with `format!` arguments.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
