//! The wait between rounds: until every node sees every node as a member (read from
//! `/metrics`) and every session had an update acknowledged that was sent after the last
//! fault healed; bounded, naming the sessions slow to recover.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cluster::{sample, scrape, Node};
use crate::load::{Board, Status};
use crate::lock;

/// Bound of the wait for the cluster to recover after a round's faults.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// How often the recovery is polled.
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// How the cluster recovered: when, and the sessions that took longest (more than
/// [`STRAGGLER_AFTER`]), each with its status then.
pub(crate) struct Recovery {
    pub(crate) took: Duration,
    /// When every node last came to see all of them as members.
    pub(crate) members: Duration,
    /// When the last session had an update acknowledged.
    pub(crate) sessions: Duration,
    pub(crate) stragglers: Vec<(usize, Status)>,
}

/// A session still without an acknowledged update this long after the faults healed is
/// named in the round's line.
const STRAGGLER_AFTER: Duration = Duration::from_secs(2);

/// Waits (bounded by `limit`) until every node sees all of them as members and, with
/// `since`, every session had a call acknowledged that was sent at or after `since`.
pub(crate) async fn settle(
    nodes: &[Node],
    board: Option<(&Board, Instant)>,
    limit: Duration,
) -> anyhow::Result<Recovery> {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(SETTLE_POLL);
    let mut stragglers = Vec::new();
    let (mut members_at, mut sessions_at) = (None, None);
    loop {
        ticker.tick().await;
        let mut members = Vec::with_capacity(nodes.len());
        for node in nodes {
            let count = match scrape(node.ports.metrics).await {
                Ok(text) => sample(&text, "scone_cluster_members"),
                Err(_) => None,
            };
            members.push(count);
        }
        let converged = members
            .iter()
            .all(|count| *count == Some(nodes.len() as u64));
        let behind: Vec<(usize, Status)> = match board {
            None => Vec::new(),
            Some((board, since)) => lock(board)
                .iter()
                .enumerate()
                .filter(|(_, status)| !matches!(status.acked_sent, Some(sent) if sent >= since))
                .map(|(index, status)| (index, status.clone()))
                .collect(),
        };
        let now = started.elapsed();
        if !behind.is_empty() && now > STRAGGLER_AFTER {
            stragglers.clone_from(&behind);
        }
        members_at = if converged {
            members_at.or(Some(now))
        } else {
            None
        };
        sessions_at = if behind.is_empty() {
            sessions_at.or(Some(now))
        } else {
            None
        };
        if let (Some(members), Some(sessions)) = (members_at, sessions_at) {
            return Ok(Recovery {
                took: now,
                members,
                sessions,
                stragglers,
            });
        }
        if started.elapsed() > limit {
            let members: Vec<String> = nodes
                .iter()
                .zip(&members)
                .map(|(node, count)| match count {
                    Some(count) => format!("{} sees {count}", node.name()),
                    None => format!("{} did not answer", node.name()),
                })
                .collect();
            let since = board.map_or(started, |(_, since)| since);
            let behind: Vec<String> = behind.iter().map(|b| straggler(b, since)).collect();
            bail!(
                "the cluster did not recover within {limit:?}: members: {}; {} session(s) had no \
                 update acknowledged since the faults healed: {:#?}",
                members.join(", "),
                behind.len(),
                &behind[..behind.len().min(8)]
            );
        }
    }
}

/// A session slow to recover, as the round's line shows it.
pub(crate) fn straggler((index, status): &(usize, Status), since: Instant) -> String {
    let last = match &status.last_error {
        Some((sent, error)) if *sent >= since => format!(
            ", the last sent {} ms after the faults healed: {error}",
            (*sent - since).as_millis()
        ),
        Some((_, error)) => format!(", the last sent before the faults healed: {error}"),
        None => String::new(),
    };
    format!(
        "session {index}: {} call(s) failed in a row{last}",
        status.failing
    )
}
