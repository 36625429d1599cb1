//! HAProxy, the plain proxy the relay is measured against: installed with apt-get if it
//! is missing, and started in TCP mode on a free loopback port in front of the cart
//! server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::Process;
use crate::LIMIT;

/// Runs `command` to the end, for at most `limit`; whether it succeeded.
fn run_bounded(command: &mut std::process::Command, limit: Duration) -> bool {
    let Ok(mut child) = command.spawn() else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether `haproxy -v` runs.
fn haproxy_runs() -> bool {
    run_bounded(
        std::process::Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        LIMIT,
    )
}

/// Makes sure `haproxy` is on `PATH`, installing Debian's package if it is not.
pub fn ensure_haproxy() -> bool {
    if haproxy_runs() {
        return true;
    }
    eprintln!("haproxy is not installed: apt-get update, then apt-get install -y haproxy");
    let apt = |args: &[&str]| {
        run_bounded(
            std::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            Duration::from_secs(600),
        )
    };
    let installed = apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "haproxy"]);
    installed && haproxy_runs()
}

/// HAProxy in TCP mode on a free loopback port, forwarding to `upstream`.
pub async fn start_haproxy(dir: &Path, upstream: SocketAddr) -> (Process, SocketAddr) {
    // A port that was free a moment ago (HAProxy cannot report the one it picked).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = dir.join("haproxy.cfg");
    let text = format!(
        "global\n    maxconn 4096\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n\
         listen hop\n    bind {addr}\n    server cart {upstream}\n"
    );
    std::fs::write(&config, text).expect("write haproxy.cfg");
    let log: PathBuf = dir.join("haproxy.log");
    let log_file = std::fs::File::create(&log).expect("haproxy.log");
    let mut child = Command::new("haproxy")
        .arg("-f")
        .arg(&config)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("haproxy exited ({status}) before listening:\n{log}");
        }
        let connected =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
        if let Ok(Ok(_)) = connected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "haproxy did not listen on {addr} within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let process = Process::new("haproxy", child, None);
    (process, addr)
}
