//! The scale part: what one node holds. A child process (this binary again, so the
//! reading is not the bench's own memory) fills one node's `SessionStore` to each
//! checkpoint and reports its `VmRSS`; beside it the Redis primary and replica get as many
//! keys, and theirs is read; then the table.

use std::process::Stdio;
use std::time::{Duration, Instant};

use scone::{Draft, EndpointId, Minter, ServiceId, SigningKey};
use scone_cluster::lineage::LINEAGE_DEPTH;
use scone_cluster::{Lineage, NodeConfig, SessionId, SessionStore, Stored, VersionId};
use tokio::process::Command;

use crate::redis::{encode_command, RedisConnection, RedisPair, Reply};
use crate::settings::{env_or, Settings};
use crate::{bounded, bounded_by, VALUE_BYTES};

/// Set in the child process that fills a `SessionStore` (the scale part).
pub const SCALE_CHILD: &str = "VS_REDIS_SCALE_CHILD";

/// Resident set size of process `pid` in bytes (`VmRSS`), 0 if unreadable.
fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Bytes in MB.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The child process of the scale part: fills one `SessionStore` to each checkpoint in
/// `VS_REDIS_SCALE_CHILD` and prints `checkpoint SESSIONS RSS_BYTES ENCODED_BYTES` lines.
pub fn scale_child(spec: &str) {
    let checkpoints: Vec<u64> = spec
        .split(',')
        .map(|n| n.trim().parse().expect("a checkpoint"))
        .collect();
    let group: usize = env_or("VS_REDIS_SCALE_GROUP", 64usize).clamp(1, 1 << 16);
    let largest = checkpoints.iter().copied().max().unwrap_or(0);
    let bound = NodeConfig::default()
        .max_sessions
        .max(usize::try_from(largest).expect("sessions fit in memory"));
    let store = SessionStore::new(bound);
    let service = ServiceId::new("cart").expect("service ID");
    let minter = Minter::new(SigningKey::generate().expect("a signing key"));
    let mut drafts: Vec<Draft> = Vec::with_capacity(group);
    let full_lineage = (1..=LINEAGE_DEPTH as u64).fold(Lineage::default(), |lineage, version| {
        let ancestor = VersionId {
            version,
            digest: [version as u8; 16],
        };
        Lineage::after(ancestor, &lineage)
    });
    println!("before {}", rss_bytes("self"));
    let started = Instant::now();
    let (mut next, mut encoded) = (0u64, 0u64);
    for checkpoint in checkpoints {
        while next < checkpoint {
            let size = (group as u64).min(checkpoint - next);
            drafts.clear();
            for n in next..next + size {
                let mut endpoint = [0xe; 16];
                endpoint[..8].copy_from_slice(&n.to_le_bytes());
                // A state that differs from session to session (its content does not matter).
                let state: Vec<u8> = (0..VALUE_BYTES).map(|i| (n as usize + i) as u8).collect();
                drafts.push(
                    Draft::new(service.clone(), EndpointId::from_bytes(endpoint))
                        .with_state(state)
                        .with_version(LINEAGE_DEPTH as u64 + 1),
                );
            }
            for scone in minter.mint_batch(&drafts).expect("mint a group") {
                encoded += scone.encoded().len() as u64;
                // By value: the store keeps a compacted copy, the minted one goes.
                // Each with a full lineage, as a session held after several changes is.
                assert_eq!(
                    store.put(scone, full_lineage.clone(), None),
                    Stored::Kept,
                    "session {next} kept"
                );
            }
            next += size;
        }
        assert_eq!(
            store.len() as u64,
            checkpoint,
            "the store holds every session"
        );
        println!(
            "checkpoint {checkpoint} {} {encoded} {:.1}",
            rss_bytes("self"),
            started.elapsed().as_secs_f64()
        );
    }
}

/// One row of the scale table.
pub struct ScaleRow {
    sessions: u64,
    scone_rss: u64,
    scone_grown: u64,
    encoded_each: f64,
    redis: Option<(u64, u64, u64, u64)>,
}

/// Runs the scale child and, beside it, fills Redis; the rows of the scale table.
pub async fn scale(settings: &Settings, redis: Option<&RedisPair>) -> (u64, Vec<ScaleRow>) {
    let spec: Vec<String> = settings
        .scale_sessions
        .iter()
        .map(|n| n.to_string())
        .collect();
    eprintln!(
        "scale: filling one node's SessionStore to {} sessions (child process)",
        spec.join(", ")
    );
    let child = Command::new(std::env::current_exe().expect("this binary"))
        .env(SCALE_CHILD, spec.join(","))
        .env("VS_REDIS_SCALE_GROUP", settings.scale_group.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    let output = bounded_by(Duration::from_secs(900), "the scale child", child)
        .await
        .expect("run the scale child");
    assert!(
        output.status.success(),
        "the scale child failed: {}",
        output.status
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut before = 0;
    let mut scone_rows = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["before", rss] => before = rss.parse().unwrap_or(0),
            ["checkpoint", sessions, rss, encoded, secs] => {
                let sessions: u64 = sessions.parse().unwrap_or(1);
                let rss: u64 = rss.parse().unwrap_or(0);
                let encoded: f64 = encoded.parse().unwrap_or(0.0);
                eprintln!("scale: {sessions} sessions in the store after {secs} s");
                scone_rows.push(ScaleRow {
                    sessions,
                    scone_rss: rss,
                    scone_grown: rss.saturating_sub(before),
                    encoded_each: encoded / sessions as f64,
                    redis: None,
                });
            }
            _ => eprintln!("scale child: {line}"),
        }
    }
    if let Some(redis) = redis {
        let pids = (
            redis.primary.pid().to_string(),
            redis.replica.pid().to_string(),
        );
        let (primary_before, replica_before) = (rss_bytes(&pids.0), rss_bytes(&pids.1));
        let mut connection = RedisConnection::connect(redis.primary.port)
            .await
            .expect("connect to the primary");
        let mut written = 0u64;
        for row in &mut scone_rows {
            const BATCH: u64 = 1_000;
            let mut batch = Vec::new();
            while written < row.sessions {
                let size = BATCH.min(row.sessions - written);
                batch.clear();
                for n in written..written + size {
                    let key = format!("scale:{n}");
                    let value: Vec<u8> = (0..VALUE_BYTES)
                        .map(|i| b'a' + ((n as usize + i) % 26) as u8)
                        .collect();
                    encode_command(&[b"SET", key.as_bytes(), &value], &mut batch);
                }
                bounded("a batch of SETs", connection.send(&batch))
                    .await
                    .expect("send SETs");
                for _ in 0..size {
                    let reply = bounded("a SET", connection.read_reply()).await;
                    assert_eq!(reply.expect("a reply"), Reply::Status("OK".into()));
                }
                written += size;
            }
            let waited = bounded("WAIT 1 0", connection.command(&["WAIT", "1", "0"])).await;
            assert_eq!(waited.expect("WAIT answered"), Reply::Integer(1));
            let (primary, replica) = (rss_bytes(&pids.0), rss_bytes(&pids.1));
            row.redis = Some((
                primary,
                primary.saturating_sub(primary_before),
                replica,
                replica.saturating_sub(replica_before),
            ));
        }
    }
    (before, scone_rows)
}

/// Prints the scale table (stdout): `rows` as [`scale`] made them, the child's RSS
/// `before` it filled the store.
pub fn print_table(settings: &Settings, before: u64, rows: &[ScaleRow]) {
    println!();
    println!(
        "Scale: one node's SessionStore (a child process, RSS {:.1} MB before), sessions of {VALUE_BYTES} B state minted in groups of {}; Redis primary and replica, keys of {VALUE_BYTES} B values",
        mb(before),
        settings.scale_group
    );
    println!(
        "| sessions | SCONE node RSS MB | grew MB | B/session | encoded SCONE B | Redis primary RSS MB | grew MB | B/key | Redis replica RSS MB | grew MB |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let redis = match row.redis {
            Some((primary, primary_grown, replica, replica_grown)) => format!(
                "{:.1} | {:.1} | {:.0} | {:.1} | {:.1}",
                mb(primary),
                mb(primary_grown),
                primary_grown as f64 / row.sessions as f64,
                mb(replica),
                mb(replica_grown)
            ),
            None => "- | - | - | - | -".into(),
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {redis} |",
            row.sessions,
            mb(row.scone_rss),
            mb(row.scone_grown),
            row.scone_grown as f64 / row.sessions as f64,
            row.encoded_each,
        );
    }
    println!(
        "sessions held per node: at most NodeConfig::default().max_sessions = {} (past it new sessions are refused, never evicted); with k = 1 each session is on 2 nodes, so 3 nodes at that bound hold {} sessions",
        NodeConfig::default().max_sessions,
        NodeConfig::default().max_sessions * 3 / 2
    );
    println!(
        "in memory besides the encoded bytes: each session is a `SessionId` ({} B) and a pointer in a HashMap bucket, and a boxed `Held` ({} B: the `Scone`, its `Lineage` and `Ballot`), plus the compacted bytes' own allocation and the lineage's ({} ancestors of {} B); Redis keeps a dictEntry, a key sds and a value sds per key",
        std::mem::size_of::<SessionId>(),
        std::mem::size_of::<scone_cluster::Held>(),
        LINEAGE_DEPTH,
        std::mem::size_of::<VersionId>()
    );
}
