//! `scone-relay`: starting one as a child process and reading the addresses it prints,
//! and its `/metrics`, for the signature checks per stored SCONE.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::Process;
use crate::{bounded, LIMIT};

const RELAY: &str = env!("CARGO_BIN_EXE_scone-relay");

/// A running `scone-relay` and the addresses it printed.
pub struct StartedRelay {
    pub process: Process,
    pub addr: SocketAddr,
    pub mesh: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Whether this `scone-relay` serves `/metrics` (`--metrics ADDR`).
pub fn relay_has_metrics() -> bool {
    std::process::Command::new(RELAY)
        .arg("--help")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--metrics"))
}

/// A `scone-relay` with `args`, once it listens.
pub async fn start_relay(name: &'static str, args: &[String]) -> StartedRelay {
    let mut child = Command::new(RELAY)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {RELAY}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let (mut mesh, mut metrics) = (None, None);
    loop {
        let line = bounded("scone-relay saying where it listens", lines.next_line())
            .await
            .expect("read scone-relay's output")
            .unwrap_or_else(|| panic!("{name} exited before listening (see its log above)"));
        if let Some(addr) = line.strip_prefix("mesh listening on ") {
            mesh = Some(addr.trim().parse().expect("a mesh address"));
        } else if let Some(url) = line.strip_prefix("metrics on http://") {
            metrics = url.trim().trim_end_matches("/metrics").parse().ok();
        } else if let Some(addr) = line.strip_prefix("listening on ") {
            let addr = addr.trim().parse().expect("a listen address");
            let process = Process::new(name, child, Some(lines));
            return StartedRelay {
                process,
                addr,
                mesh,
                metrics,
            };
        } else {
            eprintln!("{name}: {line}");
        }
    }
}

/// The relay's (signature checks, SCONEs verified for storing) so far, from its
/// `/metrics` at `addr`; `None` if it does not answer.
pub async fn verify_counters(addr: SocketAddr) -> Option<(f64, f64)> {
    let text = scrape(addr).await?;
    let value = |name: &str| {
        text.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            match parts.next() == Some(name) {
                true => parts.next()?.parse::<f64>().ok(),
                false => None,
            }
        })
    };
    let checks = value("scone_relay_signature_checks_total")?;
    let stored =
        value("scone_relay_stores_total")? + value("scone_relay_stale_stores_total").unwrap_or(0.0);
    Some((checks, stored))
}

/// The body of `GET /metrics` at `addr` (HTTP/1.1, one request, connection closed).
async fn scrape(addr: SocketAddr) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        std::io::Result::Ok(reply)
    };
    match tokio::time::timeout(LIMIT, exchange).await {
        Ok(Ok(reply)) => Some(String::from_utf8_lossy(&reply).into_owned()),
        _ => None,
    }
}

/// "checks per stored SCONE (checks / stored)" between two readings of a relay's counters.
pub fn verifies_per_store(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> String {
    match (before, after) {
        (Some((c0, s0)), Some((c1, s1))) if s1 > s0 => format!(
            "{:.3} ({:.0} checks / {:.0} stored)",
            (c1 - c0) / (s1 - s0),
            c1 - c0,
            s1 - s0
        ),
        _ => "-".to_string(),
    }
}
