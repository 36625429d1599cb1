//! What the demos that run real processes share: building the shipped binaries with the
//! cargo that runs the demo, starting a process and reading its standard output, killing
//! it with SIGKILL, a bounded wait, a temporary directory with the service's signing key,
//! and the narration (numbered steps, checks).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use examples::procs::{self, Binary, Process};
//!
//! let binaries = procs::build(&[Binary::example("examples", "cart-server")])?;
//! let dir = procs::TempDir::new("my-demo")?;
//! let (_key, key_file) = procs::signing_key(&dir)?;
//! let args = ["--key".into(), key_file.display().to_string(), "--listen".into(), "127.0.0.1:0".into()];
//! // A cart server prints its address on its first line once it listens.
//! let (server, lines) = Process::start("cart server", &binaries[0], &args, |_| true).await?;
//! println!("cart server on {}", lines[0]);
//! server.kill().await?;
//! # Ok(()) }
//! ```
//!
//! Every process started here is killed when its [`Process`] is dropped, so none outlives
//! the demo, whether it ends well or with an error.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use scone::SigningKey;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Every wait for a process or a call is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(10);

/// `future`, or an error naming `what` if it takes longer than [`LIMIT`].
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(LIMIT, future)
        .await
        .with_context(|| format!("{what}: nothing within {LIMIT:?}"))
}

/// A binary of the workspace for [`build`] to build.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    package: &'static str,
    name: &'static str,
    example: bool,
}

impl Binary {
    /// The `[[bin]]` `name` of `package` (lands in `target/<profile>/`).
    pub fn bin(package: &'static str, name: &'static str) -> Self {
        Self {
            package,
            name,
            example: false,
        }
    }

    /// The `[[example]]` `name` of `package` (lands in `target/<profile>/examples/`).
    pub fn example(package: &'static str, name: &'static str) -> Self {
        Self {
            package,
            name,
            example: true,
        }
    }
}

/// Builds `binaries` with the cargo that runs this demo, in the demo's profile, and
/// returns their paths, in the same order.
///
/// `cargo run` releases its build lock before it runs the example, so the demo can call
/// cargo again; it runs the shipped binaries, built from this checkout, rather than
/// copies of their code. They land next to the demo's own executable
/// (`target/<profile>/examples/DEMO`): binaries in `target/<profile>/`, examples in
/// `target/<profile>/examples/`. Call it from an example run by `cargo run --example`.
pub fn build(binaries: &[Binary]) -> anyhow::Result<Vec<PathBuf>> {
    let exe = std::env::current_exe()?;
    let demo = exe
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "DEMO".into());
    cargo_build(
        binaries,
        &format!("run the demo with `cargo run --example {demo}`"),
    )?;
    let examples_dir = exe.parent().context("the demo's directory")?.to_owned();
    let profile_dir = examples_dir.parent().context("the profile directory")?;
    locate(binaries, profile_dir, &examples_dir)
}

/// [`build`], for an integration test run by `cargo test`: builds `binaries` with the
/// cargo that runs the test, in the test's profile, and returns their paths, in the
/// same order.
///
/// `cargo test` releases its build lock before it runs the tests, as `cargo run` does.
/// A test's executable is `target/<profile>/deps/TEST-HASH`: binaries land in
/// `target/<profile>/`, examples in `target/<profile>/examples/`.
pub fn build_for_test(binaries: &[Binary]) -> anyhow::Result<Vec<PathBuf>> {
    let exe = std::env::current_exe()?;
    cargo_build(binaries, "run the test with `cargo test`")?;
    let deps_dir = exe.parent().context("the test's directory")?;
    let profile_dir = deps_dir.parent().context("the profile directory")?;
    locate(binaries, profile_dir, &profile_dir.join("examples"))
}

/// Runs `cargo build` for `binaries` (see [`build`]); `hint` says how to run the caller
/// if cargo cannot be started.
fn cargo_build(binaries: &[Binary], hint: &str) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(&cargo);
    build.args(["build", "--quiet"]);
    for binary in binaries {
        let kind = if binary.example { "--example" } else { "--bin" };
        build.args(["-p", binary.package, kind, binary.name]);
    }
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    // Without the variables `cargo run` set for this example: build scripts that watch
    // one (ring's watches CARGO_MANIFEST_DIR) would otherwise run again, and rebuild
    // their crates, on every alternation of `cargo run` and this build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name);
        if set_by_cargo_run {
            build.env_remove(&*name);
        }
    }
    let names: Vec<&str> = binaries.iter().map(|binary| binary.name).collect();
    let names = names.join(" and ");
    let status = build.status().with_context(|| {
        format!("could not run {cargo:?} to build {names} ({hint}, or put cargo on PATH)")
    })?;
    if !status.success() {
        bail!("building {names} failed ({status})");
    }
    Ok(())
}

/// Where `binaries` are after a build: binaries in `profile_dir`, examples in
/// `examples_dir`.
fn locate(
    binaries: &[Binary],
    profile_dir: &Path,
    examples_dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let suffix = std::env::consts::EXE_SUFFIX;
    let mut paths = Vec::with_capacity(binaries.len());
    for binary in binaries {
        let dir = if binary.example {
            examples_dir
        } else {
            profile_dir
        };
        let path = dir.join(format!("{}{suffix}", binary.name));
        if !path.is_file() {
            bail!("{} is not there after the build", path.display());
        }
        paths.push(path);
    }
    Ok(paths)
}

/// How [`Process::start_with`] starts a process.
#[derive(Clone, Debug)]
pub struct Options {
    /// Its `RUST_LOG` (default `warn`: quiet, but warnings and errors show).
    pub rust_log: String,
    /// Whether its standard error is kept for the demo to read
    /// ([`Process::take_stderr`]), without colour codes, rather than shown on the
    /// demo's (default `false`).
    pub capture_stderr: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rust_log: "warn".into(),
            capture_stderr: false,
        }
    }
}

/// A process the demo started: SIGKILLed when dropped, so none outlives the demo.
pub struct Process {
    name: String,
    child: Child,
    /// Its standard output, kept open after the lines the demo read.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Process {
    /// Starts `program` with `args` and reads its standard output up to the first line
    /// that satisfies `ready` (bounded by [`LIMIT`]); returns the process and the lines
    /// read. Its standard error shows on the demo's.
    pub async fn start(
        name: &str,
        program: &Path,
        args: &[String],
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        Self::start_with(name, program, args, &Options::default(), ready).await
    }

    /// [`start`](Self::start), with `options`.
    pub async fn start_with(
        name: &str,
        program: &Path,
        args: &[String],
        options: &Options,
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let mut command = Command::new(program);
        if options.capture_stderr {
            // Plain text, without colour codes: the demo reads it.
            command.stderr(Stdio::piped()).env("NO_COLOR", "1");
        } else {
            command.stderr(Stdio::inherit());
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", &options.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {}", program.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut lines = Vec::new();
        loop {
            let line = bounded(name, stdout.next_line())
                .await??
                .with_context(|| format!("{name} exited before it was ready"))?;
            let done = ready(&line);
            lines.push(line);
            if done {
                break;
            }
        }
        let process = Self {
            name: name.to_owned(),
            child,
            _stdout: stdout,
        };
        Ok((process, lines))
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process ID (0 once it was reaped).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Its standard error, the first time, if it was started with
    /// [`Options::capture_stderr`]. Read it: a process blocks once the pipe is full.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Kills it with SIGKILL (a crash: it gets no chance to save or hand over anything)
    /// and waits for it to be gone (bounded by [`LIMIT`]).
    pub async fn kill(mut self) -> anyhow::Result<ExitStatus> {
        self.child.start_kill()?;
        let status = bounded(&self.name, self.child.wait()).await??;
        Ok(status)
    }
}

/// A directory for a demo's files, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory named after `prefix` and this process's ID, in the system's
    /// temporary directory.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("scone-{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        Ok(Self(path))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new signing key for the cart service, saved in `dir` as `cart.key` (what
/// `cart-server --key` reads); the key and the file.
pub fn signing_key(dir: &TempDir) -> anyhow::Result<(SigningKey, PathBuf)> {
    let key = SigningKey::generate()?;
    let key_file = dir.path().join("cart.key");
    key.save(&key_file, true)?;
    Ok((key, key_file))
}

/// Prints the heading of a numbered step.
pub fn step(text: &str) {
    println!("\n== {text}");
}

/// Prints `ok: name` if `ok`; else fails, saying which check failed and `detail`.
pub fn check(name: &str, ok: bool, detail: impl std::fmt::Display) -> anyhow::Result<()> {
    if !ok {
        bail!("check failed: {name}: {detail}");
    }
    println!("   ok: {name}");
    Ok(())
}

/// What a failed call was, for a demo's summary: the refusal's code or the error's kind,
/// and the retry advice.
pub fn call_error(error: tarpc::client::RpcError) -> String {
    use scone_rpc::CallError;
    use tarpc::client::RpcError;
    let error = CallError::from(error);
    let advice = error.retry_advice();
    let what = match (&error, error.refusal()) {
        (_, Some(kind)) => format!("refused, {}", kind.code()),
        (CallError::Rpc(RpcError::Shutdown), _) => "connection shut down".into(),
        (CallError::Rpc(RpcError::Send(_)), _) => "could not send".into(),
        // What the cluster channel says when no node answered in time.
        (CallError::Rpc(RpcError::Channel(error)), _) => format!("channel error: {error}"),
        (CallError::Rpc(RpcError::DeadlineExceeded), _) => "deadline exceeded".into(),
        (CallError::Rpc(RpcError::Server(_)), _) => "server error".into(),
        (error, _) => format!("other: {error}"),
    };
    format!("{what} (retry advice: {advice:?})")
}
