//! Two tiers, neither keeping state: a wallet front-end over a ledger back-end.
//!
//! The client calls the wallet; the wallet's handler calls the ledger through an
//! *entrusting* client, so the ledger's SCONE comes from the client with the request and
//! goes back to the client in the reply: the back-end's SCONE is entrusted to the client
//! through the front-end.
//!
//! The ledger keeps a balance, which a client holding its own SCONEs could roll back by
//! sending an old one again; so the ledger runs with the replay guard, which remembers
//! only the newest version it issued per session and refuses older ones.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use scone::{KeyRing, SigningKey};
use scone_rpc::server::{LayerConfig, MemoryWatermarks, ServerConfig};
use scone_rpc::state::SconeState;
use scone_rpc::{SconeClient, SconeLayer, SconeStore};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The ledger's per-session state: every amount recorded.
#[derive(SconeState, Serialize, Deserialize, Default, Debug)]
#[scone(service = "ledger")]
pub struct LedgerState {
    /// Amounts in the order recorded.
    pub entries: Vec<i64>,
}

/// The wallet's per-session state.
#[derive(SconeState, Serialize, Deserialize, Default, Debug)]
#[scone(service = "wallet")]
pub struct WalletState {
    /// Operations made through this wallet session.
    pub operations: u64,
}

/// The ledger back-end.
#[tarpc::service]
pub trait Ledger {
    /// Records `amount`; returns the balance and the number of entries.
    async fn record(amount: i64) -> Result<(i64, usize), String>;
}

/// The wallet front-end.
#[tarpc::service]
pub trait Wallet {
    /// Deposits (or, if negative, withdraws) `amount` through the ledger.
    async fn deposit(amount: i64) -> Result<WalletView, String>;
}

/// What the wallet returns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WalletView {
    /// The ledger's balance.
    pub balance: i64,
    /// The ledger's entry count.
    pub entries: usize,
    /// The wallet's own operation count.
    pub operations: u64,
}

/// The ledger server.
#[derive(Clone)]
pub struct LedgerServer;

impl Ledger for LedgerServer {
    async fn record(self, _: tarpc::context::Context, amount: i64) -> Result<(i64, usize), String> {
        let mut ledger = LedgerState::load().map_err(|e| format!("{e:#}"))?;
        ledger.entries_mut().push(amount);
        let result = (ledger.entries.iter().sum(), ledger.entries.len());
        ledger.save().map_err(|e| format!("{e:#}"))?;
        Ok(result)
    }
}

/// The wallet server: holds a connection to the ledger, and no client's state.
#[derive(Clone)]
pub struct WalletServer {
    /// Calls the ledger, passing its SCONE to and from our own caller.
    ledger: LedgerClient<SconeClient<LedgerRequest, LedgerResponse>>,
}

impl Wallet for WalletServer {
    async fn deposit(
        self,
        ctx: tarpc::context::Context,
        amount: i64,
    ) -> Result<WalletView, String> {
        let mut wallet = WalletState::load().map_err(|e| format!("{e:#}"))?;
        let (balance, entries) =
            self.ledger
                .record(ctx, amount)
                .await
                .map_err(|e| match scone_rpc::refusal(&e) {
                    // Say why: a stale ledger SCONE means the client sent an old one again.
                    Some(kind) => format!("the ledger refused the request: {kind}"),
                    None => format!("ledger unavailable: {e:#}"),
                })??;
        *wallet.operations_mut() += 1;
        let view = WalletView {
            balance,
            entries,
            operations: wallet.operations,
        };
        wallet.save().map_err(|e| format!("{e:#}"))?;
        Ok(view)
    }
}

/// Serves the ledger on `listener` until `shutdown` completes.
pub async fn serve_ledger(
    listener: TcpListener,
    key: SigningKey,
    shutdown: impl Future,
) -> std::io::Result<()> {
    // The balance must not roll back: the ledger refuses any SCONE older than the newest
    // it issued for the session (a client that kept an old one cannot spend twice).
    let config = LayerConfig {
        replay_guard: Some(Arc::new(MemoryWatermarks::default())),
        ..LayerConfig::default()
    };
    let ledger = LedgerState::service_id().map_err(std::io::Error::other)?;
    let layer = SconeLayer::with_config(ledger, key, KeyRing::new(), config)?;
    let serve = layer.wrap(LedgerServer.serve());
    scone_rpc::server::run(listener, serve, ServerConfig::default(), shutdown).await
}

/// Serves the wallet on `listener`, calling the ledger at `ledger`, until `shutdown`.
pub async fn serve_wallet(
    listener: TcpListener,
    key: SigningKey,
    ledger: SocketAddr,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let channel = scone_rpc::client::connect(ledger).await?;
    // Each service's name comes from its state type: written once, never mistyped.
    let ledger = LedgerClient::from(SconeClient::entrusting_for::<LedgerState>(channel)?);
    let serve = SconeLayer::for_state::<WalletState>(key)?.wrap(WalletServer { ledger }.serve());
    scone_rpc::server::run(listener, serve, ServerConfig::default(), shutdown).await?;
    Ok(())
}

/// A wallet client over `addr` keeping the SCONEs of both tiers in `store`.
pub async fn connect_wallet(
    addr: SocketAddr,
    store: SconeStore,
) -> anyhow::Result<WalletClient<SconeClient<WalletRequest, WalletResponse>>> {
    let channel = scone_rpc::client::connect(addr).await?;
    Ok(WalletClient::from(SconeClient::caching_for::<WalletState>(
        channel, store,
    )?))
}
