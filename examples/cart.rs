//! The main demo: a stateless cart service, narrated step by step.
//!
//! `cargo run --example cart` starts two cart server processes that share a signing key,
//! has a client alternate between them, stops and restarts both, and shows the cart
//! survive, because the client holds it. It exits 0 when every check passed, and 1
//! naming the check that failed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use examples::cart::{self, CartClient, CartRequest, CartResponse, CartView};
use scone::{Draft, EndpointId, Minter, SigningKey};
use scone_rpc::{refusal, RefusalKind, SconeClient, SconeStore};
use tarpc::context;

type Client = CartClient<SconeClient<CartRequest, CartResponse>>;

/// A cart server process; stopped when dropped.
struct ServerProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts this binary in server mode and reads the address it listens on.
    fn start(key_file: &Path, name: &'static str) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve")
            .arg(key_file)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("could not start a server process")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .parse()
            .with_context(|| format!("server said {line:?}"))?;
        println!("   started server {name} (pid {}) on {addr}", child.id());
        Ok(Self { name, child, addr })
    }

    /// Asks the server to shut down (by closing its stdin) and waits for it to exit.
    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            ensure!(
                Instant::now() < deadline,
                "server {} did not stop in time",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("   stopped server {}", self.name);
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Server mode: serve until stdin closes (the parent stopping us, or dying).
fn serve(key_file: &Path, name: &str) -> anyhow::Result<()> {
    let key = SigningKey::load(key_file)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_line(&mut String::new());
        });
        cart::serve(listener, key, name, stdin_closed).await?;
        Ok(())
    })
}

fn step(text: &str) {
    println!("\n== {text}");
}

fn check(name: &str, ok: bool, detail: impl std::fmt::Display) -> anyhow::Result<()> {
    if !ok {
        bail!("check failed: {name}: {detail}");
    }
    println!("   ok: {name}");
    Ok(())
}

fn show(view: &CartView) -> String {
    let items: Vec<String> = view
        .items
        .iter()
        .map(|(item, n)| format!("{n} {item}"))
        .collect();
    format!("[{}] (served by {})", items.join(", "), view.served_by)
}

async fn call(
    what: &str,
    future: impl std::future::Future<
        Output = Result<Result<CartView, cart::CartError>, tarpc::client::RpcError>,
    >,
) -> anyhow::Result<CartView> {
    let view = tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .with_context(|| format!("{what}: timed out"))?
        .with_context(|| format!("{what}: rpc failed"))?
        .with_context(|| format!("{what}: refused by the cart"))?;
    println!("   {what} -> {}", show(&view));
    Ok(view)
}

async fn connect(server: &ServerProcess, store: &SconeStore) -> anyhow::Result<Client> {
    cart::connect(server.addr, store.clone()).await
}

async fn demo() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("scone-cart-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("cart.key");
    let result = run(&key_file).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(key_file: &Path) -> anyhow::Result<()> {
    step("1. Make the cart service's signing key; both servers will share it");
    let key = SigningKey::generate()?;
    key.save(key_file, true)?;
    println!(
        "   key id {}, public key {}",
        key.key_id(),
        key.public_key()
    );

    step("2. Start two cart server processes on 127.0.0.1");
    let a = ServerProcess::start(key_file, "A")?;
    let b = ServerProcess::start(key_file, "B")?;

    step("3. The client alternates between them; its SCONE store is the only state");
    let store = SconeStore::default();
    let (to_a, to_b) = (connect(&a, &store).await?, connect(&b, &store).await?);
    let view = call(
        "add 2 apple via A",
        to_a.add(context::current(), "apple".into(), 2),
    )
    .await?;
    check(
        "A served the first call",
        view.served_by == "A",
        show(&view),
    )?;
    let view = call(
        "add 1 pear via B",
        to_b.add(context::current(), "pear".into(), 1),
    )
    .await?;
    check(
        "B saw A's apples",
        view.items.get("apple") == Some(&2),
        show(&view),
    )?;
    let view = call(
        "add 1 apple via A",
        to_a.add(context::current(), "apple".into(), 1),
    )
    .await?;
    check(
        "A saw B's pear",
        view.items.get("pear") == Some(&1),
        show(&view),
    )?;
    check(
        "A counted 3 apples",
        view.items.get("apple") == Some(&3),
        show(&view),
    )?;
    let view = call("view via B", to_b.view(context::current())).await?;
    check(
        "both servers show one cart",
        view.items.len() == 2,
        show(&view),
    )?;
    let held = store
        .get(&cart::service_id()?)
        .context("the client holds a SCONE")?;
    println!(
        "   the client holds SCONE version {} ({} bytes, {} bytes of cart)",
        held.version(),
        held.encoded_len(),
        held.state().len()
    );
    check(
        "one new version per change, none for the view",
        held.version() == 3,
        held.version(),
    )?;

    step("4. Stop both servers: nothing of the cart is left on any server");
    a.stop()?;
    b.stop()?;
    let probe = to_a.view(context::current()).await;
    check(
        "the old servers are gone",
        probe.is_err(),
        format!("{probe:?}"),
    )?;

    step("5. Start two new server processes (new ports, same key)");
    let a2 = ServerProcess::start(key_file, "A2")?;
    let b2 = ServerProcess::start(key_file, "B2")?;
    let (to_a2, to_b2) = (connect(&a2, &store).await?, connect(&b2, &store).await?);
    let view = call("view via A2", to_a2.view(context::current())).await?;
    check(
        "the cart survived the restart",
        view.items.get("apple") == Some(&3) && view.items.get("pear") == Some(&1),
        show(&view),
    )?;
    let view = call(
        "remove apple via B2",
        to_b2.remove(context::current(), "apple".into()),
    )
    .await?;
    check(
        "B2 changed the restored cart",
        !view.items.contains_key("apple") && view.items.contains_key("pear"),
        show(&view),
    )?;

    step("6. A SCONE the servers did not sign is refused before the handler runs");
    let stranger = Minter::new(SigningKey::generate()?).mint(
        Draft::new(cart::service_id()?, EndpointId::random()?).with_state(held.state().to_vec()),
    )?;
    let forged_store = SconeStore::default();
    forged_store.put(stranger);
    let forger = cart::connect(a2.addr, forged_store).await?;
    let error = forger
        .view(context::current())
        .await
        .err()
        .context("the forged SCONE was accepted")?;
    let kind = refusal(&error);
    let detail =
        std::error::Error::source(&error).map_or(error.to_string(), |source| source.to_string());
    println!("   refused: {detail}");
    check(
        "the refusal is typed",
        kind == Some(RefusalKind::Scone(scone::RejectReason::UnknownKey)),
        format!("{kind:?}"),
    )?;

    a2.stop()?;
    b2.stop()?;
    println!("\nall checks passed");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--serve") if args.len() == 4 => serve(Path::new(&args[2]), &args[3]),
        Some(other) => Err(anyhow::anyhow!(
            "unknown argument {other:?}; run with no arguments"
        )),
        None => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(demo())),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\n{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
