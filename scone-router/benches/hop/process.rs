//! A child process of the bench (HAProxy, a relay): killed when dropped, so also when the
//! bench panics, or stopped and reaped at the end.

use tokio::io::{BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::bounded;

/// A child process: killed when dropped (`kill_on_drop`), so also when the bench panics.
pub struct Process {
    name: &'static str,
    child: Child,
    /// Kept open so the child never writes to a closed pipe.
    _stdout: Option<Lines<BufReader<ChildStdout>>>,
}

impl Process {
    /// `child`, spawned with `kill_on_drop`, and its piped stdout if it has one.
    pub fn new(
        name: &'static str,
        child: Child,
        stdout: Option<Lines<BufReader<ChildStdout>>>,
    ) -> Self {
        Self {
            name,
            child,
            _stdout: stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Kills it and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        if bounded(self.name, self.child.wait()).await.is_err() {
            eprintln!("warning: could not reap {}", self.name);
        }
    }
}
