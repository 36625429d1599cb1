//! Redis: installing `redis-server` if it is missing, starting a primary with one replica
//! in sync and stopping them (killed on drop, so also on a panic), and the few lines of
//! RESP the bench speaks to them, with a session's `SET` then `WAIT 1 0`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{bounded, LIMIT, VALUE_BYTES};

// ---------------------------------------------------------------- RESP, and a session on it

/// A reply in RESP (arrays are not needed here).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

/// Appends a RESP command of `args` to `out`.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection to Redis, speaking RESP.
pub struct RedisConnection {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl RedisConnection {
    pub async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(16 * 1024, stream),
            line: Vec::with_capacity(64),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    pub async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        self.line.clear();
        if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = self
            .line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| bad("a reply line without CRLF".into()))?;
        let (&kind, rest) = line
            .split_first()
            .ok_or_else(|| bad("an empty reply".into()))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Status(text)),
            b'-' => Ok(Reply::Error(text)),
            b':' => text
                .parse()
                .map(Reply::Integer)
                .map_err(|_| bad(format!("integer reply {text:?}"))),
            b'$' => {
                let length: i64 = text
                    .parse()
                    .map_err(|_| bad(format!("bulk length {text:?}")))?;
                let Ok(length) = usize::try_from(length) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut body = vec![0; length + 2];
                self.stream.read_exact(&mut body).await?;
                body.truncate(length);
                Ok(Reply::Bulk(Some(body)))
            }
            other => Err(bad(format!("unexpected reply type {:?}", other as char))),
        }
    }

    /// Sends one command and reads its reply.
    pub async fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut bytes = Vec::new();
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        encode_command(&args, &mut bytes);
        self.send(&bytes).await?;
        self.read_reply().await
    }

    /// The text of `INFO section`.
    async fn info(&mut self, section: &str) -> String {
        match bounded("INFO", self.command(&["INFO", section])).await {
            Ok(Reply::Bulk(Some(body))) => String::from_utf8_lossy(&body).into_owned(),
            other => panic!("INFO {section}: {other:?}"),
        }
    }
}

/// A session on Redis: its key, and a connection of its own (`WAIT` blocks it).
pub struct RedisSession {
    connection: RedisConnection,
    /// `SET key value` then `WAIT 1 0`, encoded.
    commands: Vec<u8>,
    /// Where the `WAIT` starts in `commands`.
    wait_at: usize,
    /// Where the value starts in `commands`.
    value_at: usize,
    write: RedisWrite,
    calls: u64,
}

/// How a Redis session writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisWrite {
    /// `SET` and `WAIT 1 0` in one write, then both replies.
    Pipelined,
    /// `SET`, its reply, then `WAIT 1 0` and its reply.
    Unpipelined,
    /// `SET` alone: not replicated before the reply (the counterpart of `scone-k0`).
    Unreplicated,
}

impl RedisSession {
    pub async fn open(port: u16, session: u64, write: RedisWrite) -> Self {
        let connection = bounded("connecting to redis", RedisConnection::connect(port))
            .await
            .expect("connect to redis");
        let key = format!("session:{session}");
        let value = vec![b'v'; VALUE_BYTES];
        let mut commands = Vec::new();
        encode_command(&[b"SET", key.as_bytes(), &value], &mut commands);
        let value_at = commands.len() - 2 - VALUE_BYTES;
        let wait_at = commands.len();
        encode_command(&[b"WAIT", b"1", b"0"], &mut commands);
        Self {
            connection,
            commands,
            wait_at,
            value_at,
            write,
            calls: 0,
        }
    }

    /// `SET` of a changed value, then `WAIT 1 0` (unless [`RedisWrite::Unreplicated`]);
    /// whether Redis said `OK` and that one replica has it.
    pub async fn update(&mut self) -> bool {
        self.calls += 1;
        // The value changes on every write, as a session's state would.
        let stamp = format!("{:016x}", self.calls);
        self.commands[self.value_at..self.value_at + 16].copy_from_slice(stamp.as_bytes());
        let exchange = async {
            let (set, wait) = match self.write {
                RedisWrite::Pipelined => {
                    self.connection.send(&self.commands).await?;
                    (
                        self.connection.read_reply().await?,
                        self.connection.read_reply().await?,
                    )
                }
                RedisWrite::Unpipelined => {
                    self.connection.send(&self.commands[..self.wait_at]).await?;
                    let set = self.connection.read_reply().await?;
                    self.connection.send(&self.commands[self.wait_at..]).await?;
                    (set, self.connection.read_reply().await?)
                }
                RedisWrite::Unreplicated => {
                    self.connection.send(&self.commands[..self.wait_at]).await?;
                    (self.connection.read_reply().await?, Reply::Integer(1))
                }
            };
            std::io::Result::Ok((set, wait))
        };
        let (set, wait) = bounded("a SET and WAIT", exchange)
            .await
            .expect("redis answered");
        set == Reply::Status("OK".into()) && wait == Reply::Integer(1)
    }
}

// ---------------------------------------------------------------- the processes

/// A `redis-server` child process: killed when dropped, so also on a panic.
pub struct RedisProcess {
    name: &'static str,
    child: Child,
    pub port: u16,
}

impl RedisProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn start(name: &'static str, dir: &Path) -> Self {
        let port = free_port();
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("a directory for redis");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("a redis log");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // Only the first full sync: no 5 s wait for more replicas to join it.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&data)
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join(format!("{name}.log")));
                panic!("redis {name} exited ({status}) before listening:\n{log:?}");
            }
            if let Ok(Ok(mut connection)) =
                tokio::time::timeout(Duration::from_secs(1), RedisConnection::connect(port)).await
            {
                let pong = bounded("PING", connection.command(&["PING"])).await;
                if matches!(pong, Ok(Reply::Status(ref s)) if s == "PONG") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis {name} did not listen on port {port} within {LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { name, child, port }
    }

    /// Kills it and waits until it is gone.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        if bounded(self.name, self.child.wait()).await.is_err() {
            eprintln!("warning: could not reap redis {}", self.name);
        }
    }
}

/// A Redis primary with one replica in sync.
pub struct RedisPair {
    pub primary: RedisProcess,
    pub replica: RedisProcess,
    pub version: String,
}

impl RedisPair {
    pub async fn start(dir: &Path) -> Self {
        let primary = RedisProcess::start("primary", dir).await;
        let replica = RedisProcess::start("replica", dir).await;
        let mut to_replica = RedisConnection::connect(replica.port)
            .await
            .expect("connect to the replica");
        let port = primary.port.to_string();
        let attached = bounded(
            "REPLICAOF",
            to_replica.command(&["REPLICAOF", "127.0.0.1", &port]),
        )
        .await
        .expect("REPLICAOF answered");
        assert_eq!(attached, Reply::Status("OK".into()), "REPLICAOF");
        let mut to_primary = RedisConnection::connect(primary.port)
            .await
            .expect("connect to the primary");
        let deadline = Instant::now() + LIMIT;
        loop {
            let on_primary = to_primary.info("replication").await;
            let on_replica = to_replica.info("replication").await;
            let online =
                on_primary.contains("connected_slaves:1") && on_primary.contains("state=online");
            if online && on_replica.contains("master_link_status:up") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the redis replica did not get in sync within {LIMIT:?}:\n{on_primary}\n{on_replica}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A write that the replica acknowledges: the setup works end to end.
        let mut probe = RedisSession::open(primary.port, u64::MAX, RedisWrite::Pipelined).await;
        assert!(probe.update().await, "a SET and WAIT 1 0 on the new pair");
        let server = to_primary.info("server").await;
        let version = server
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        Self {
            primary,
            replica,
            version,
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        vec![self.primary.pid(), self.replica.pid()]
    }

    pub async fn stop(self) {
        self.replica.stop().await;
        self.primary.stop().await;
    }
}

/// Whether `redis-server --version` runs.
fn redis_runs() -> bool {
    run_bounded(
        std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        LIMIT,
    )
}

/// Makes sure `redis-server` is on `PATH`, installing Debian's package if it is not.
pub fn ensure_redis() -> bool {
    if redis_runs() {
        return true;
    }
    eprintln!(
        "redis-server is not installed: apt-get update, then apt-get install -y redis-server"
    );
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
    let installed = apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "redis-server"]);
    installed && redis_runs()
}

/// A port that was free a moment ago (Redis cannot report one it picked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

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
