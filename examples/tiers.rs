//! Two tiers, neither keeping state: a wallet front-end calls a ledger back-end, and the
//! ledger's SCONE is entrusted to the client through the wallet.
//!
//! `cargo run --example tiers` runs both servers on 127.0.0.1, makes deposits, restarts
//! both tiers, and exits 0 when every check passed.

use std::time::Duration;

use anyhow::{ensure, Context};
use examples::tiers;
use scone::{ServiceId, SigningKey};
use scone_rpc::SconeStore;
use tarpc::context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    wallet_addr: std::net::SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

async fn start(ledger_key: &SigningKey, wallet_key: &SigningKey) -> anyhow::Result<Running> {
    let ledger_listener = TcpListener::bind("127.0.0.1:0").await?;
    let wallet_listener = TcpListener::bind("127.0.0.1:0").await?;
    let (ledger_addr, wallet_addr) = (ledger_listener.local_addr()?, wallet_listener.local_addr()?);
    let (ledger_stop, ledger_stopped) = oneshot::channel::<()>();
    let (wallet_stop, wallet_stopped) = oneshot::channel::<()>();
    let key = ledger_key.clone();
    let ledger = tokio::spawn(async move {
        tiers::serve_ledger(ledger_listener, key, ledger_stopped).await?;
        Ok(())
    });
    let key = wallet_key.clone();
    let wallet = tokio::spawn(async move {
        tiers::serve_wallet(wallet_listener, key, ledger_addr, wallet_stopped).await
    });
    println!("   ledger on {ledger_addr}, wallet on {wallet_addr}");
    Ok(Running {
        wallet_addr,
        stops: vec![wallet_stop, ledger_stop],
        tasks: vec![wallet, ledger],
    })
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .context("server stop timed out")???;
        }
        println!("   both tiers stopped");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (ledger_key, wallet_key) = (SigningKey::generate()?, SigningKey::generate()?);
    let store = SconeStore::default();

    println!("== 1. Start the ledger (back-end) and the wallet (front-end)");
    let running = start(&ledger_key, &wallet_key).await?;
    let client = tiers::connect_wallet(running.wallet_addr, store.clone()).await?;
    for amount in [100, -30] {
        let view = client
            .deposit(context::current(), amount)
            .await?
            .map_err(anyhow::Error::msg)?;
        println!(
            "   deposit {amount:>4} -> balance {} ({} entries, wallet ops {})",
            view.balance, view.entries, view.operations
        );
    }
    let ledger = store
        .get_via(&ServiceId::new("wallet")?, &ServiceId::new("ledger")?)
        .context("check failed: client holds the ledger's SCONE")?;
    println!(
        "   the client holds the ledger's SCONE (version {}) though it only called the wallet",
        ledger.version()
    );

    println!("== 2. Restart both tiers: neither kept anything");
    running.stop().await?;
    let running = start(&ledger_key, &wallet_key).await?;
    let client = tiers::connect_wallet(running.wallet_addr, store.clone()).await?;
    let view = client
        .deposit(context::current(), 5)
        .await?
        .map_err(anyhow::Error::msg)?;
    println!(
        "   deposit    5 -> balance {} ({} entries, wallet ops {})",
        view.balance, view.entries, view.operations
    );
    ensure!(
        (view.balance, view.entries, view.operations) == (75, 3, 3),
        "check failed: both states continued: {view:?}"
    );

    println!("== 3. Keep a copy of the SCONEs, spend, and replay the copy: refused");
    let (wallet_id, ledger_id) = (ServiceId::new("wallet")?, ServiceId::new("ledger")?);
    let copy = SconeStore::default();
    copy.put(store.get(&wallet_id).context("the wallet's SCONE")?);
    copy.put_via(
        &wallet_id,
        store
            .get_via(&wallet_id, &ledger_id)
            .context("the ledger's SCONE")?,
    );
    let spent = client
        .deposit(context::current(), -75)
        .await?
        .map_err(anyhow::Error::msg)?;
    println!("   deposit  -75 -> balance {}", spent.balance);
    let replayer = tiers::connect_wallet(running.wallet_addr, copy).await?;
    let replayed = replayer.deposit(context::current(), -75).await?;
    println!("   the same -75 again from the copy -> {replayed:?}");
    ensure!(
        replayed.as_ref().is_err_and(|e| e.contains("scone-stale")),
        "check failed: the ledger refused the replayed SCONE as stale: {replayed:?}"
    );
    running.stop().await?;
    println!("\nall checks passed");
    Ok(())
}
